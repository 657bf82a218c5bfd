// The runtime's surface for the API: commands in, results (views of entity state) out.
import type { Observable } from 'rxjs';
import type {
  ContainerResources,
  ContainerStats,
  ExitStatus,
  GuestDetails,
  NetInterface,
  NetRoute,
  ProcessInfo,
  ProcessSpec,
} from '../agent/index.js';
import type { EventEnvelope } from '../events/index.js';
import type { TransitionWatch } from '../explain/index.js';
import type { Accel, VmUsage } from '../hypervisor/index.js';
import type { DnsConfig } from '../network/index.js';
import type { VolumeMount } from './volumes.js';

export interface SandboxConfig {
  readonly vcpus?: number;
  readonly maxVcpus?: number;
  readonly memoryMiB?: number;
  readonly maxMemoryMiB?: number;
  readonly hostname?: string;
  /** The guest's resolv.conf: a list of servers, or CRI's DNSConfig shape. */
  readonly dns?:
    | readonly string[]
    | {
        readonly servers?: readonly string[];
        readonly searches?: readonly string[];
        readonly options?: readonly string[];
      };
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * 'user': a NIC behind QEMU's own NAT (outbound traffic, plus `ports` inbound); 'none' (the default): loopback
   * only. Off by default because a user network also reaches the host's loopback services. `{ mode: 'netns', path }`:
   * the VM is plugged into that network namespace (CNI's veths, through taps and tc redirects).
   */
  readonly network?: 'none' | 'user' | { readonly mode: 'netns'; readonly path: string };
  /** Host ports forwarded into the guest (network 'user' only). */
  readonly ports?: readonly PortMapping[];
  /**
   * Host cgroup directories (one per hierarchy, made by the caller) that QEMU joins once launched, so the host's
   * resource accounting of that cgroup sees the VM (sandboxd-runc: the spec's linux.cgroupsPath). The caller
   * removes them; the daemon only moves the pid.
   */
  readonly hostCgroup?: readonly string[];
}

/** A host port forwarded to a port of the guest, where the sandbox's containers listen. */
export interface PortMapping {
  readonly hostPort: number;
  readonly guestPort: number;
  /** Default tcp. */
  readonly protocol?: 'tcp' | 'udp';
  /** Host address to listen on; default 127.0.0.1 (0.0.0.0 publishes it to the network). */
  readonly hostAddress?: string;
}

export interface SandboxView {
  readonly id: string;
  /** Which life of the id (1, then 2 after a delete and a create again, …). */
  readonly incarnation: number;
  /** Machine state: created | starting | running | paused | stopping | stopped | deleted | failed | lost. */
  readonly state: string;
  readonly config: SandboxConfig;
  /** vCPUs the VM has now (the config's at boot, more after sandbox.update). */
  readonly vcpus?: number;
  /** Memory the VM has now, in MiB (boot memory plus hotplugged DIMMs). */
  readonly memoryMiB?: number;
  readonly pid?: number;
  readonly accel?: Accel;
  readonly containers: readonly string[];
  readonly createdAt: string;
  readonly version: number;
  readonly error?: string;
  /**
   * The resolver config the guest was given: the config's `dns`, else the netns's /etc/netns/NAME/resolv.conf,
   * else QEMU's resolver on the user network.
   */
  readonly dns?: DnsConfig;
  /** Changes clients made to this VM's network (guest.updateInterface / guest.updateRoutes), latest each. */
  readonly guestNetwork?: {
    readonly interfaces: Readonly<Record<string, NetInterface>>;
    readonly routes: Readonly<Record<string, NetRoute>>;
  };
  /** Where the VM came from: the id of the template it was restored from, or `cold` (absent: no VM yet). */
  readonly template?: string;
  /** Why it booted cold although a template was asked for (the restore's failure). */
  readonly templateError?: string;
  /** A netns sandbox's wiring: each veth of its namespace and the tap (and NIC, with the veth's MAC) joined to it. */
  readonly interfaces?: readonly {
    readonly veth: string;
    readonly tap: string;
    readonly mac: string;
    readonly addresses: readonly string[];
  }[];
}

export interface SandboxStats {
  readonly sandbox: SandboxView;
  readonly vm?: VmUsage;
  readonly containers: Readonly<Record<string, ContainerStats>>;
}

export interface ContainerView {
  readonly sandboxId: string;
  readonly id: string;
  /** created | running | paused | stopped | deleted (plus transitional states). */
  readonly state: string;
  readonly bundle: string;
  readonly pid?: number;
  readonly exit?: ExitStatus;
  readonly execs: readonly string[];
  readonly createdAt: string;
  /** When the init started and ended (absent until then). */
  readonly startedAt?: string;
  readonly exitedAt?: string;
  /** The bundle's annotations (config.json), and whether the init runs on a terminal. */
  readonly annotations: Readonly<Record<string, string>>;
  readonly terminal: boolean;
  /** Which life of the id in this life of its sandbox. */
  readonly incarnation: number;
  readonly version: number;
}

export interface ExecView {
  readonly sandboxId: string;
  readonly containerId: string;
  readonly id: string;
  /** created (registered, not started) | starting | running | exited | failed. */
  readonly state: string;
  readonly incarnation: number;
  readonly process: ProcessSpec;
  readonly pid?: number;
  readonly exit?: ExitStatus;
  readonly version: number;
}

export interface CreateContainerParams {
  readonly sandboxId: string;
  readonly id: string;
  /** Absolute host path of an OCI bundle (config.json + rootfs). */
  readonly bundle: string;
  readonly process?: ProcessSpec;
  readonly resources?: ContainerResources;
  /** Host directories or files the container sees (bind-mounted through the sandbox share). */
  readonly mounts?: readonly VolumeMount[];
}

/**
 * The actor runtime, as the API sees it. Each command is checked against the entity's state
 * (InvalidState otherwise, nothing written), persisted, then run. Throws NotFound, AlreadyExists,
 * InvalidState, Conflict, Timeout, HypervisorError, AgentError.
 */
/** Who calls the runtime: the API connection a request came on (recorded with the command's event). */
export interface Caller {
  readonly connection: number;
}

export interface Runtime {
  readonly accel: Accel | undefined;
  /**
   * Runs `fn` (an API handler) with `caller` as who asks: commands it starts synchronously record the caller
   * and their method in their event's correlationId (`api:<method>:<connection>`), for `events explain`.
   */
  asking?<T>(caller: Caller, fn: () => T): T;
  /** Operations in flight and transition durations (events.stuck, metrics); absent in runtimes without one. */
  readonly transitions?: TransitionWatch;
  createSandbox(id: string, config: SandboxConfig): Promise<SandboxView>;
  /** Resolves when the VM runs and the agent answered (state running), or rejects (state failed). */
  startSandbox(id: string): Promise<SandboxView>;
  stopSandbox(id: string, options?: { timeoutMs?: number }): Promise<SandboxView>;
  pauseSandbox(id: string): Promise<SandboxView>;
  resumeSandbox(id: string): Promise<SandboxView>;
  deleteSandbox(id: string, options?: { force?: boolean }): Promise<void>;
  /**
   * Grows a running sandbox's VM to `vcpus` vCPUs and `memoryMiB` MiB in total (at least one given):
   * hotplug, onlined by the guest agent, then SandboxResized { vcpus, memoryMiB } appended. Equal to
   * now: nothing happens. InvalidArgument (field named, nothing done) above maxVcpus / maxMemoryMiB,
   * below now (no unplug), memory growth not a multiple of 128 MiB, no free DIMM slot; InvalidState
   * unless running.
   */
  updateSandbox(id: string, request: { vcpus?: number; memoryMiB?: number }): Promise<SandboxView>;
  /**
   * Plugs a NIC into a running netns sandbox for each veth added to its namespace since it was wired, and
   * unplugs the NIC of each veth gone: SandboxNetworkRefreshRequested, then SandboxNetworkRefreshed (or
   * …RefreshFailed). InvalidArgument('id') unless the sandbox is on a network namespace; InvalidState unless running.
   */
  refreshNetwork(id: string): Promise<SandboxView>;
  getSandbox(id: string): SandboxView;
  listSandboxes(): SandboxView[];
  /** The view, what the VM costs the host (when the hypervisor says), and each live container's cgroup stats. */
  sandboxStats(id: string): Promise<SandboxStats>;
  /** What the sandbox's VM costs the host now; undefined without a VM (or a hypervisor that cannot say). */
  vmUsage(id: string): Promise<VmUsage | undefined>;

  createContainer(params: CreateContainerParams): Promise<ContainerView>;
  startContainer(sandboxId: string, id: string): Promise<ContainerView>;
  killContainer(sandboxId: string, id: string, signal: string, all?: boolean): Promise<void>;
  deleteContainer(sandboxId: string, id: string, options?: { force?: boolean }): Promise<ContainerView>;
  pauseContainer(sandboxId: string, id: string): Promise<ContainerView>;
  resumeContainer(sandboxId: string, id: string): Promise<ContainerView>;
  getContainer(sandboxId: string, id: string): ContainerView;
  listContainers(sandboxId: string): ContainerView[];
  containerStats(sandboxId: string, id: string): Promise<ContainerStats>;
  updateContainer(sandboxId: string, id: string, resources: ContainerResources): Promise<ContainerView>;
  containerPs(sandboxId: string, id: string): Promise<ProcessInfo[]>;
  /** Resolves with the exit status once the container's init process ended. */
  waitContainer(sandboxId: string, id: string): Promise<ExitStatus>;

  /** A new exec with `process`, or without one the exec createExec registered; resolves once it runs. */
  startExec(sandboxId: string, containerId: string, execId: string, process?: ProcessSpec): Promise<ExecView>;
  /** Registers an exec without starting it (state created). */
  createExec(sandboxId: string, containerId: string, execId: string, process: ProcessSpec): Promise<ExecView>;
  /** Forgets an exec that is not running (ExecDeleted): its id may be used again. */
  deleteExec(sandboxId: string, containerId: string, execId: string): Promise<void>;
  waitExec(sandboxId: string, containerId: string, execId: string): Promise<ExitStatus>;
  killExec(sandboxId: string, containerId: string, execId: string, signal: string): Promise<void>;
  resizeExec(
    sandboxId: string,
    containerId: string,
    execId: string,
    rows: number,
    cols: number,
  ): Promise<void>;
  getExec(sandboxId: string, containerId: string, execId: string): ExecView;
  /** execId '' = the container's init process. Streams from what is still buffered, then live. */
  output(
    sandboxId: string,
    containerId: string,
    execId: string,
    stream: 'stdout' | 'stderr',
  ): Observable<Uint8Array>;
  writeStdin(sandboxId: string, containerId: string, execId: string, data: Uint8Array): Promise<number>;
  closeStdin(sandboxId: string, containerId: string, execId: string): Promise<void>;
  /** Records that the guest dropped output nobody read (once per gap); false if nothing was recorded. */
  recordOutputDropped(report: OutputDropReport): Promise<boolean>;

  guestDetails(sandboxId: string): Promise<GuestDetails>;
  listInterfaces(sandboxId: string): Promise<NetInterface[]>;
  listRoutes(sandboxId: string): Promise<NetRoute[]>;
  /** Changes one guest interface (addresses replace the old ones); intent and outcome recorded (GuestNetworkUpdateRequested → GuestNetworkUpdated). */
  updateInterface(sandboxId: string, iface: NetInterface): Promise<NetInterface>;
  /** Adds or replaces guest routes; recorded as updateInterface is. Resolves with the whole table. */
  updateRoutes(sandboxId: string, routes: readonly NetRoute[]): Promise<NetRoute[]>;
  /** Sets the guest clock (default: the host's time now), e.g. after a long pause. */
  setGuestTime(sandboxId: string, time?: Date): Promise<Date>;
  /** Mixes `seed` (default: 64 random bytes from the host) into the guest's entropy pool. */
  reseedGuestRandom(sandboxId: string, seed?: Uint8Array): Promise<number>;
  copyFile(sandboxId: string, path: string, data: Uint8Array, mode?: number): Promise<void>;
  metrics(sandboxId: string): Promise<string>;

  /** Durable events, live (see EventStore.subscribe). */
  events(fromSeq?: number): Observable<EventEnvelope>;
  /** Stops accepting commands, waits for in-flight ones, leaves VMs running. */
  shutdown(): Promise<void>;
}

/** Bytes the guest dropped from a process's stream while nobody read (the host log keeper finds the gap). */
export interface OutputDropReport {
  readonly sandboxId: string;
  readonly containerId: string;
  /** '' = the container's init process. */
  readonly execId: string;
  readonly stream: 'stdout' | 'stderr';
  readonly bytes: number;
  /** Stream offset where the dropped bytes began. */
  readonly offset: number;
}
