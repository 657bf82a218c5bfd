// GrpcAgent: the Agent port over gRPC to each sandbox's guest agent, through a resync relay on QEMU's agent socket.
import pino, { type Logger } from 'pino';
import { map, type Observable } from 'rxjs';
import { AgentConnections } from './connection.js';
import * as containers from './container-rpcs.js';
import { AgentEventFeed } from './event-feed.js';
import * as processes from './exec-rpcs.js';
import * as network from './network-rpcs.js';
import type { AgentRelay } from './relay.js';
import * as sandbox from './sandbox-rpcs.js';
import type {
  Agent,
  AgentEvent,
  AgentOutputChunk,
  ContainerInfo,
  ContainerStats,
  CreateSandboxRequest,
  ExitStatus,
  GuestDetails,
  NetInterface,
  NetRoute,
  ProcessInfo,
} from './types.js';
import { defaultProtoPath, loadAgentService } from './wire.js';

export interface GrpcAgentOptions {
  readonly logger?: Logger;
  /** Deadline of each unary call (default 30 s; TCG guests are slow). */
  readonly callDeadlineMs?: number;
  /** Deadline of `connect` when the caller gives none (default 60 s). */
  readonly connectDeadlineMs?: number;
  /** proto/agent.proto; default: the one in this package. */
  readonly protoPath?: string;
  /**
   * HTTP/2 ping interval (default 20 s). An agent that restarted in the guest ignores the old session's bytes, so an
   * unanswered ping is how the client learns to reconnect (and handshake) again.
   */
  readonly keepaliveMs?: number;
  /**
   * Bytes the guest keeps per output stream while nobody reads (default: the guest's, 1 MiB); given to each guest at
   * CreateSandbox. Tests make it tiny to see loss recorded.
   */
  readonly guestOutputBufferBytes?: number;
}

/**
 * The Agent port over gRPC. One relay + one grpc-js client per connected sandbox (connection.ts); the RPCs are
 * adapted by group (sandbox-, container-, exec-, network-rpcs.ts). Errors: NotFound / InvalidState /
 * InvalidArgument / AlreadyExists rebuilt from the agent's metadata, Timeout for deadlines, AgentError for the rest,
 * naming the RPC.
 */
export class GrpcAgent implements Agent {
  readonly #logger: Logger;
  readonly #connectDeadlineMs: number;
  readonly #outputBufferBytes: number;
  readonly #connections: AgentConnections;
  readonly #events: AgentEventFeed;

  constructor(options: GrpcAgentOptions = {}) {
    this.#logger = options.logger ?? pino({ level: 'silent' });
    this.#connectDeadlineMs = options.connectDeadlineMs ?? 60_000;
    this.#outputBufferBytes = options.guestOutputBufferBytes ?? 0;
    this.#connections = new AgentConnections({
      service: loadAgentService(options.protoPath ?? defaultProtoPath()),
      callDeadlineMs: options.callDeadlineMs ?? 30_000,
      keepaliveMs: options.keepaliveMs ?? 20_000,
    });
    this.#events = new AgentEventFeed(this.#connections, (sandboxId) => this.check(sandboxId));
  }

  /** Relay of a connected sandbox (tests use it to drop the connection). */
  relayOf(sandboxId: string): AgentRelay | undefined {
    return this.#connections.get(sandboxId)?.relay;
  }

  async connect(
    sandboxId: string,
    agentSocket: string,
    options: { deadlineMs?: number; signal?: AbortSignal; outputSocket?: string | undefined } = {},
  ): Promise<void> {
    const existing = this.#connections.get(sandboxId);
    if (existing && existing.agentSocket === agentSocket) {
      await this.check(sandboxId);
      return;
    }
    if (existing) await this.disconnect(sandboxId);
    const logger = this.#logger.child({ sandboxId });
    const { connection, check } = await this.#connections.dial(sandboxId, agentSocket, {
      deadlineMs: options.deadlineMs ?? this.#connectDeadlineMs,
      signal: options.signal,
      outputSocket: options.outputSocket,
      logger,
    });
    this.#events.noteBoot(sandboxId, check.bootId);
    logger.info({ step: 'agent connect', handshakes: connection.relay.handshakes }, 'agent connected');
    this.#events.follow(connection);
    // Opened now, not at the first read: a write an earlier host left blocked on the port drains into this one.
    void connection.outputPort?.current();
  }

  async disconnect(sandboxId: string): Promise<void> {
    await this.#connections.close(sandboxId);
  }

  /** Disconnects every sandbox. */
  async close(): Promise<void> {
    await Promise.all(this.#connections.sandboxIds().map((id) => this.disconnect(id)));
  }

  async check(sandboxId: string): Promise<{ version: string }> {
    const answer = await this.#connections.unary(sandboxId, 'Check', {});
    this.#events.noteBoot(sandboxId, answer.bootId);
    return { version: answer.version };
  }

  events(sandboxId: string): Observable<AgentEvent> {
    return this.#events.events(sandboxId);
  }

  // ---- the sandbox and its guest (sandbox-rpcs.ts) ----

  createSandbox(sandboxId: string, request: CreateSandboxRequest): Promise<void> {
    return sandbox.createSandbox(this.#connections, sandboxId, request, this.#outputBufferBytes);
  }

  destroySandbox(...args: Parameters<Agent['destroySandbox']>): Promise<void> {
    return sandbox.destroySandbox(this.#connections, ...args);
  }

  onlineCpuMem(...args: Parameters<Agent['onlineCpuMem']>): Promise<void> {
    return sandbox.onlineCpuMem(this.#connections, ...args);
  }

  memHotplugByProbe(...args: Parameters<Agent['memHotplugByProbe']>): Promise<void> {
    return sandbox.memHotplugByProbe(this.#connections, ...args);
  }

  getGuestDetails(...args: Parameters<Agent['getGuestDetails']>): Promise<GuestDetails> {
    return sandbox.getGuestDetails(this.#connections, ...args);
  }

  setGuestDateTime(...args: Parameters<Agent['setGuestDateTime']>): Promise<void> {
    return sandbox.setGuestDateTime(this.#connections, ...args);
  }

  copyFile(...args: Parameters<Agent['copyFile']>): Promise<void> {
    return sandbox.copyFile(this.#connections, ...args);
  }

  reseedRandomDev(...args: Parameters<Agent['reseedRandomDev']>): Promise<void> {
    return sandbox.reseedRandomDev(this.#connections, ...args);
  }

  getMetrics(...args: Parameters<Agent['getMetrics']>): Promise<string> {
    return sandbox.getMetrics(this.#connections, ...args);
  }

  // ---- containers (container-rpcs.ts) ----

  createContainer(...args: Parameters<Agent['createContainer']>): Promise<{ pid: number }> {
    return containers.createContainer(this.#connections, ...args);
  }

  startContainer(...args: Parameters<Agent['startContainer']>): Promise<void> {
    return containers.startContainer(this.#connections, ...args);
  }

  removeContainer(...args: Parameters<Agent['removeContainer']>): Promise<void> {
    return containers.removeContainer(this.#connections, ...args);
  }

  pauseContainer(...args: Parameters<Agent['pauseContainer']>): Promise<void> {
    return containers.pauseContainer(this.#connections, ...args);
  }

  resumeContainer(...args: Parameters<Agent['resumeContainer']>): Promise<void> {
    return containers.resumeContainer(this.#connections, ...args);
  }

  listContainers(...args: Parameters<Agent['listContainers']>): Promise<ContainerInfo[]> {
    return containers.listContainers(this.#connections, ...args);
  }

  updateContainer(...args: Parameters<Agent['updateContainer']>): Promise<void> {
    return containers.updateContainer(this.#connections, ...args);
  }

  statsContainer(...args: Parameters<Agent['statsContainer']>): Promise<ContainerStats> {
    return containers.statsContainer(this.#connections, ...args);
  }

  listProcesses(
    ...args: Parameters<Agent['listProcesses']>
  ): Promise<{ processes: ProcessInfo[]; table?: string }> {
    return containers.listProcesses(this.#connections, ...args);
  }

  // ---- processes (exec-rpcs.ts) ----

  execProcess(...args: Parameters<Agent['execProcess']>): Promise<{ pid: number }> {
    return processes.execProcess(this.#connections, ...args);
  }

  signalProcess(...args: Parameters<Agent['signalProcess']>): Promise<void> {
    return processes.signalProcess(this.#connections, ...args);
  }

  waitProcess(...args: Parameters<Agent['waitProcess']>): Promise<ExitStatus> {
    return processes.waitProcess(this.#connections, ...args);
  }

  writeStdin(...args: Parameters<Agent['writeStdin']>): Promise<number> {
    return processes.writeStdin(this.#connections, ...args);
  }

  closeStdin(...args: Parameters<Agent['closeStdin']>): Promise<void> {
    return processes.closeStdin(this.#connections, ...args);
  }

  ttyWinResize(...args: Parameters<Agent['ttyWinResize']>): Promise<void> {
    return processes.ttyWinResize(this.#connections, ...args);
  }

  readStdout(sandboxId: string, containerId: string, execId: string): Observable<Uint8Array> {
    return processes
      .readOutput(this.#connections, sandboxId, 'ReadStdout', containerId, execId, 0)
      .pipe(map((chunk) => chunk.data));
  }

  readStderr(sandboxId: string, containerId: string, execId: string): Observable<Uint8Array> {
    return processes
      .readOutput(this.#connections, sandboxId, 'ReadStderr', containerId, execId, 0)
      .pipe(map((chunk) => chunk.data));
  }

  readOutput(
    sandboxId: string,
    containerId: string,
    execId: string,
    stream: 'stdout' | 'stderr',
    offset: number,
  ): Observable<AgentOutputChunk> {
    const rpc = stream === 'stdout' ? 'ReadStdout' : 'ReadStderr';
    return processes.readOutput(this.#connections, sandboxId, rpc, containerId, execId, offset);
  }

  // ---- the guest's network (network-rpcs.ts) ----

  listInterfaces(...args: Parameters<Agent['listInterfaces']>): Promise<NetInterface[]> {
    return network.listInterfaces(this.#connections, ...args);
  }

  updateInterface(...args: Parameters<Agent['updateInterface']>): Promise<NetInterface> {
    return network.updateInterface(this.#connections, ...args);
  }

  listRoutes(...args: Parameters<Agent['listRoutes']>): Promise<NetRoute[]> {
    return network.listRoutes(this.#connections, ...args);
  }

  updateRoutes(...args: Parameters<Agent['updateRoutes']>): Promise<NetRoute[]> {
    return network.updateRoutes(this.#connections, ...args);
  }
}

/** A GrpcAgent with the given options. */
export function createGrpcAgent(options?: GrpcAgentOptions): GrpcAgent {
  return new GrpcAgent(options);
}
