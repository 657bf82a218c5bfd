// The Hypervisor port: what the actors ask of a VM. Implemented by QemuHypervisor; fakes only in unit tests.
import type { Observable } from 'rxjs';

export type Accel = 'kvm' | 'tcg';

/** Paths of a built guest image (see src/image). */
export interface GuestImagePaths {
  readonly kernel: string;
  readonly initrd: string;
  /** The guest root as a directory (node, agent bundle, crun, libs): what rootImage was packed from. */
  readonly rootDir: string;
  /**
   * The same root as a read-only erofs image, opened by every VM with virtio-blk readonly=on (it migrates;
   * a mounted 9p export does not). Always set by ensureGuestImage; a hand-made image without it gets rootDir
   * as the 9p share `sbxroot` instead (the guest init takes whichever it finds).
   */
  readonly rootImage?: string;
  /** Content hash of the image. */
  readonly version: string;
}

export interface VmConfig {
  readonly sandboxId: string;
  /** Per-sandbox directory for sockets, pidfile, console log; created by launch, removed by destroy. */
  readonly stateDir: string;
  /** Writable directory shared into the guest as the sandbox's share (bundles live here). */
  readonly sharedDir: string;
  readonly image: GuestImagePaths;
  readonly vcpus: number;
  readonly maxVcpus: number;
  readonly memoryMiB: number;
  readonly maxMemoryMiB: number;
  readonly kernelParams?: readonly string[];
  /** None when absent: the guest has only loopback. */
  readonly network?: VmNetwork;
  /**
   * Start waiting for a migration stream (`-incoming defer`) instead of running: the caller then sends QMP
   * `migrate-incoming` (a restore from a template, src/templates) and `cont`.
   */
  readonly incoming?: boolean;
  /**
   * A VM generation id (`-device vmgenid`, a UUID): a restored VM given a new one tells the guest kernel it
   * was cloned, and the kernel reseeds its random generator at once. Templates and their clones carry one.
   */
  readonly vmGenerationId?: string;
}

/** A host port forwarded to a guest port (QEMU user networking's hostfwd). */
export interface PortForward {
  readonly protocol: 'tcp' | 'udp';
  /** The host address to listen on (IPv4). */
  readonly hostAddress: string;
  readonly hostPort: number;
  readonly guestPort: number;
}

/**
 * User-mode networking (QEMU's slirp): the guest gets a NIC behind a NAT of QEMU's own, reaches what the host
 * reaches, and is reached only through forwarded ports. No bridge, tap or firewall rule on the host.
 */
export interface VmUserNetwork {
  readonly mode: 'user';
  readonly ports: readonly PortForward[];
}

/** A NIC on a tap that exists in the VM's network namespace (made by src/network), with the veth's MAC. */
export interface TapNic {
  readonly tap: string;
  readonly mac: string;
}

/**
 * The VM started inside the network namespace at `path` (the daemon stays in its own), one virtio NIC per tap;
 * the taps are joined to the namespace's veths by tc redirects, outside QEMU.
 */
export interface VmNetnsNetwork {
  readonly mode: 'netns';
  readonly path: string;
  readonly nics: readonly TapNic[];
}

export type VmNetwork = VmUserNetwork | VmNetnsNetwork;

/** Everything needed to find a running VM again after a daemon restart. Persisted in events. */
export interface VmHandle {
  readonly sandboxId: string;
  readonly pid: number;
  /** Process start time (from /proc/<pid>/stat, clock ticks) to tell a reused pid from ours. */
  readonly pidStartTime: number;
  readonly accel: Accel;
  readonly stateDir: string;
  readonly qmpSocket: string;
  readonly agentSocket: string;
  /** The output port's socket (process output, guest to host); absent for VMs started before it existed. */
  readonly outputSocket?: string;
  readonly consoleLog: string;
}

export type VmStatus = 'running' | 'paused' | 'shutdown' | 'gone';

/** Unsolicited happenings of a VM, from QMP events and the process monitor. */
export type VmEvent =
  | { readonly type: 'exited'; readonly reason: string }
  | { readonly type: 'paused' }
  | { readonly type: 'resumed' }
  | { readonly type: 'panicked' }
  | { readonly type: 'deviceDeleted'; readonly device: string };

/** How big a running VM is now, as QEMU says (boot size plus whatever was hotplugged). */
export interface VmSize {
  /** vCPUs present (query-cpus-fast). */
  readonly vcpus: number;
  /** Boot memory plus plugged DIMMs, in MiB (query-memory-size-summary). */
  readonly memoryMiB: number;
}

/** What a VM's QEMU process costs the host (from /proc). */
export interface VmUsage {
  readonly pid: number;
  /** CPU time QEMU used since it started (all vCPU and I/O threads), in seconds. */
  readonly cpuSeconds: number;
  /** QEMU's resident memory on the host: guest pages touched so far plus QEMU's own. */
  readonly rssBytes: number;
  readonly threads: number;
}

export interface StopOptions {
  /** How long to wait for a graceful powerdown before quit, then SIGKILL. */
  readonly timeoutMs?: number;
}

/**
 * A VM per sandbox, addressed by sandbox id. Every method throws HypervisorError naming the step,
 * or Timeout. QEMU runs detached: it outlives the daemon.
 */
export interface Hypervisor {
  /** Which accelerator launches use (probed once by booting, not by /dev/kvm's presence). */
  accel(): Promise<Accel>;
  /** Starts QEMU detached and resolves once QMP answers. On failure leaves nothing behind. */
  launch(config: VmConfig, signal?: AbortSignal): Promise<VmHandle>;
  /** Reconnects to a VM from a previous daemon; undefined when it is gone (or the pid is not ours). */
  attach(handle: VmHandle): Promise<VmHandle | undefined>;
  /** How a VM that is gone ended (`QEMU killed by signal 9 (SIGKILL)`), when that is known. */
  exitStatusOf?(handle: VmHandle): Promise<string | undefined>;
  status(sandboxId: string): Promise<VmStatus>;
  pause(sandboxId: string): Promise<void>;
  resume(sandboxId: string): Promise<void>;
  /** Graceful: system_powerdown → quit after timeout → SIGKILL. Resolves when the process is gone. */
  stop(sandboxId: string, options?: StopOptions): Promise<void>;
  /** Kills if needed and removes sockets, pidfile and the state dir. Idempotent. */
  destroy(sandboxId: string, stateDir: string): Promise<void>;
  /**
   * Pins every thread of the VM to host CPUs `cpus` (cpuset syntax, checked; undefined: all online CPUs) and
   * returns the list it set. Optional: a hypervisor without it cannot honour a cpuset.
   */
  pinCpus?(sandboxId: string, cpus: string | undefined): Promise<string>;
  /** Adds vCPUs up to `total`; returns the new count. The agent must online them. */
  hotplugCpus(sandboxId: string, total: number): Promise<number>;
  /**
   * Adds a memory DIMM of `sizeMiB`; the agent must online it. Throws InvalidArgument('sizeMiB') when
   * every DIMM slot is taken (checked before anything is plugged).
   */
  hotplugMemory(sandboxId: string, sizeMiB: number): Promise<void>;
  /**
   * Plugs a virtio NIC on a tap of the VM's namespace (it exists there already) into a spare root port.
   * Idempotent. Optional: ports without it cannot hotplug interfaces.
   */
  plugNic?(sandboxId: string, nic: TapNic): Promise<void>;
  /** Unplugs the NIC of `tap` once the guest let go of it, and QEMU's hold on the tap. Idempotent. */
  unplugNic?(sandboxId: string, tap: string): Promise<void>;
  /** The VM's current size (two cheap QMP queries). Optional: ports without it skip size reconciliation. */
  size?(sandboxId: string): Promise<VmSize>;
  /** What the VM's process costs the host now. Optional: ports without it report no VM usage. */
  usage?(sandboxId: string): Promise<VmUsage>;
  /**
   * Loads a saved VM state (a template, src/templates) into a VM launched with `incoming` and runs it.
   * Optional: ports without it cannot start from a template (the caller boots cold).
   */
  restoreState?(sandboxId: string, file: string, timeoutMs?: number): Promise<void>;
  /** Unsolicited events of one VM; completes after 'exited'. */
  events(sandboxId: string): Observable<VmEvent>;
}
