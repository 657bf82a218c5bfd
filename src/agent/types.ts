// The Agent port: one method per guest agent RPC, addressed by sandbox id. Implemented by the gRPC client.
import type { Observable } from 'rxjs';

/** Bytes of one output stream at an absolute offset. */
export interface AgentOutputChunk {
  readonly offset: number;
  readonly data: Uint8Array;
}

export interface ProcessSpec {
  readonly args: readonly string[];
  readonly env?: readonly string[];
  readonly cwd?: string;
  readonly terminal?: boolean;
  /**
   * "uid", "uid:gid", "name" or "name:group", resolved in the container as Kata's cmdToKataProcess does; or
   * OCI's numeric user as it is (what containerd and runc's --process send).
   */
  readonly user?: string | OciUser;
  /** Initial terminal size (OCI process.consoleSize), for terminal processes. */
  readonly consoleSize?: ConsoleSize;
  /** OCI process fields the guest's crun takes as they are (containerd's and podman's execs carry them). */
  readonly capabilities?: Readonly<Record<string, readonly string[]>>;
  readonly rlimits?: readonly { readonly type: string; readonly hard: number; readonly soft: number }[];
  readonly noNewPrivileges?: boolean;
  readonly oomScoreAdj?: number;
}

/** OCI's process.user on Linux. */
export interface OciUser {
  readonly uid: number;
  readonly gid: number;
  readonly umask?: number;
  readonly additionalGids?: readonly number[];
}

/** The ProcessSpec fields that travel as OCI JSON (ProcessSpec.oci_json), merged by the guest as they are. */
export const OCI_PROCESS_EXTRAS = ['capabilities', 'rlimits', 'noNewPrivileges', 'oomScoreAdj'] as const;

/** A terminal's size in character cells, as OCI's process.consoleSize names it. */
export interface ConsoleSize {
  readonly height: number;
  readonly width: number;
}

/** A mount the guest makes at CreateSandbox (skipped when its mount point is mounted already). */
export interface GuestStorage {
  readonly source: string;
  readonly mountPoint: string;
  readonly fstype: string;
  readonly options: readonly string[];
}

export interface CreateSandboxRequest {
  readonly hostname?: string;
  readonly dns?: readonly string[];
  readonly sandboxPidNs?: boolean;
  /** Mounts to make first (a clone of a template mounts its sandbox share here). */
  readonly storages?: readonly GuestStorage[];
}

export interface ContainerResources {
  readonly memoryLimitBytes?: number;
  readonly cpuQuota?: number;
  readonly cpuPeriod?: number;
  readonly pidsLimit?: number;
  /** Relative CPU weight as cgroup v1 shares (2..262144; 1024 is the default), as OCI and CRI give it. */
  readonly cpuShares?: number;
}

export interface CreateContainerRequest {
  readonly containerId: string;
  /** Bundle directory path relative to the sandbox share (config.json + rootfs inside). */
  readonly bundle: string;
  /** Overrides of the bundle's process (optional). */
  readonly process?: ProcessSpec;
  readonly resources?: ContainerResources;
}

export interface ExecRequest {
  readonly containerId: string;
  readonly execId: string;
  readonly process: ProcessSpec;
}

export interface ExitStatus {
  readonly exitCode: number;
  /** Signal name when killed by a signal. */
  readonly signal?: string;
  readonly oomKilled?: boolean;
}

export interface ContainerStats {
  readonly cpuUsageUsec: number;
  readonly memoryUsageBytes: number;
  readonly memoryLimitBytes?: number;
  readonly pids: number;
  readonly ioReadBytes: number;
  readonly ioWriteBytes: number;
}

export interface ProcessInfo {
  readonly pid: number;
  readonly user?: string;
  readonly command: string;
}

export interface GuestDetails {
  readonly agentVersion: string;
  readonly kernel: string;
  readonly memBlockSizeBytes: number;
  readonly cpus: number;
  readonly memTotalBytes: number;
}

export interface NetInterface {
  readonly name: string;
  readonly mac?: string;
  readonly mtu?: number;
  readonly addresses: readonly string[];
  readonly up?: boolean;
}

export interface NetRoute {
  readonly dest: string;
  readonly gateway?: string;
  readonly device?: string;
  readonly source?: string;
}

/** Unsolicited happenings reported by the agent. */
export type AgentEvent =
  | {
      readonly type: 'processExited';
      readonly containerId: string;
      readonly execId: string;
      readonly status: ExitStatus;
    }
  | { readonly type: 'oom'; readonly containerId: string };

export type ContainerStatus = 'created' | 'running' | 'paused' | 'stopped';

export interface ContainerInfo {
  readonly containerId: string;
  readonly status: ContainerStatus;
  readonly pid?: number;
  readonly exit?: ExitStatus;
  /** Exec ids known to the agent with their status. */
  readonly processes: readonly { execId: string; running: boolean; exit?: ExitStatus }[];
}

/**
 * Talks to the guest agent of one sandbox. Every call has a deadline and throws AgentError (or
 * NotFound / InvalidState / InvalidArgument mapped from the agent's gRPC status) naming the RPC.
 * An exec's "execId" of '' means the container's init process.
 */
export interface Agent {
  /** Dials the agent socket, retrying while the VM boots, until `Check` answers or the deadline. */
  connect(
    sandboxId: string,
    agentSocket: string,
    /** outputSocket: the VM's output port socket (process output skips gRPC there); absent: output over gRPC. */
    options?: { deadlineMs?: number; signal?: AbortSignal; outputSocket?: string | undefined },
  ): Promise<void>;
  disconnect(sandboxId: string): Promise<void>;
  check(sandboxId: string): Promise<{ version: string }>;
  createSandbox(sandboxId: string, request: CreateSandboxRequest): Promise<void>;
  destroySandbox(sandboxId: string): Promise<void>;
  createContainer(sandboxId: string, request: CreateContainerRequest): Promise<{ pid: number }>;
  startContainer(sandboxId: string, containerId: string): Promise<void>;
  removeContainer(sandboxId: string, containerId: string, timeoutMs?: number): Promise<void>;
  pauseContainer(sandboxId: string, containerId: string): Promise<void>;
  resumeContainer(sandboxId: string, containerId: string): Promise<void>;
  /** What the agent knows of every container and process (used by reconciliation). */
  listContainers(sandboxId: string): Promise<ContainerInfo[]>;
  execProcess(sandboxId: string, request: ExecRequest): Promise<{ pid: number }>;
  signalProcess(
    sandboxId: string,
    containerId: string,
    execId: string,
    signal: string,
    all?: boolean,
  ): Promise<void>;
  waitProcess(sandboxId: string, containerId: string, execId: string): Promise<ExitStatus>;
  writeStdin(sandboxId: string, containerId: string, execId: string, data: Uint8Array): Promise<number>;
  closeStdin(sandboxId: string, containerId: string, execId: string): Promise<void>;
  /** Output stream from the start of what the agent still buffers; completes at process exit. */
  readStdout(sandboxId: string, containerId: string, execId: string): Observable<Uint8Array>;
  readStderr(sandboxId: string, containerId: string, execId: string): Observable<Uint8Array>;
  /**
   * One stream from byte `offset` (absolute since the process started; 0 = the oldest still buffered), each chunk
   * with its offset: one starting past the previous end means the agent dropped the bytes between. Completes once
   * the process exited and everything was read. Optional: without it the daemon keeps no host logs.
   */
  readOutput?(
    sandboxId: string,
    containerId: string,
    execId: string,
    stream: 'stdout' | 'stderr',
    offset: number,
  ): Observable<AgentOutputChunk>;
  ttyWinResize(
    sandboxId: string,
    containerId: string,
    execId: string,
    rows: number,
    cols: number,
  ): Promise<void>;
  listProcesses(
    sandboxId: string,
    containerId: string,
    format: 'json' | 'table',
    args?: readonly string[],
  ): Promise<{ processes: ProcessInfo[]; table?: string }>;
  updateContainer(sandboxId: string, containerId: string, resources: ContainerResources): Promise<void>;
  statsContainer(sandboxId: string, containerId: string): Promise<ContainerStats>;
  onlineCpuMem(sandboxId: string, options: { cpus?: number; memory?: boolean }): Promise<void>;
  memHotplugByProbe(sandboxId: string, addresses: readonly number[]): Promise<void>;
  getGuestDetails(sandboxId: string): Promise<GuestDetails>;
  setGuestDateTime(sandboxId: string, date: Date): Promise<void>;
  /** Copies into the guest; `path` must stay inside the sandbox's dirs (traversal refused). */
  copyFile(sandboxId: string, path: string, data: Uint8Array, mode?: number): Promise<void>;
  reseedRandomDev(sandboxId: string, seed: Uint8Array): Promise<void>;
  listInterfaces(sandboxId: string): Promise<NetInterface[]>;
  updateInterface(sandboxId: string, iface: NetInterface): Promise<NetInterface>;
  listRoutes(sandboxId: string): Promise<NetRoute[]>;
  updateRoutes(sandboxId: string, routes: readonly NetRoute[]): Promise<NetRoute[]>;
  getMetrics(sandboxId: string): Promise<string>;
  /** Process exits and OOMs, as they happen; survives reconnects. */
  events(sandboxId: string): Observable<AgentEvent>;
}
