// GrpcAgent: the Agent port over gRPC to each sandbox's guest agent, through a resync relay on QEMU's agent socket.
import {
  Client,
  type ClientReadableStream,
  credentials,
  Metadata,
  type MethodDefinition,
} from '@grpc/grpc-js';
import pino, { type Logger } from 'pino';
import { map, type Observable, Subject } from 'rxjs';
import { AgentError, Timeout } from '../errors/index.js';
import { sleep } from '../timing/index.js';
import { fromWireInterface, fromWireRoute, toExit, toWireProcess, toWireResources } from './convert.js';
import { agentErrorOf, GRPC_STATUS } from './grpc-errors.js';
import { followOutput, OutputPortLink, readOutputOnce } from './output.js';
import { AgentRelay } from './relay.js';
import type {
  Agent,
  AgentEvent,
  AgentOutputChunk,
  ContainerInfo,
  ContainerResources,
  ContainerStats,
  CreateContainerRequest,
  CreateSandboxRequest,
  ExecRequest,
  ExitStatus,
  GuestDetails,
  NetInterface,
  NetRoute,
  ProcessInfo,
} from './types.js';
import {
  type AgentServiceDefinition,
  defaultProtoPath,
  loadAgentService,
  type Outgoing,
  type RequestOf,
  type ResponseOf,
  type StreamMethodName,
  type UnaryMethodName,
  type WireAgentEvent,
} from './wire.js';

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

const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const FLOW_CONTROL_WINDOW_BYTES = 16 * 1024 * 1024;
/** How long one WaitProcess long poll lasts before it is renewed (each call still has a deadline). */
const WAIT_POLL_MS = 60_000;
/** RPCs that change nothing in the guest: safe to send again when the transport dropped under them. */
const RETRIABLE_RPCS: ReadonlySet<UnaryMethodName> = new Set<UnaryMethodName>([
  'Check',
  'GetGuestDetails',
  'ListContainers',
  'StatsContainer',
  'ListProcesses',
  'WaitProcess',
  'GetMetrics',
  'ListInterfaces',
  'ListRoutes',
]);

interface Connection {
  readonly sandboxId: string;
  readonly agentSocket: string;
  readonly relay: AgentRelay;
  readonly client: Client;
  /** The output port's session, when the VM has the port. */
  readonly outputPort: OutputPortLink | undefined;
  closed: boolean;
  eventsCall: ClientReadableStream<WireAgentEvent> | undefined;
  retryTimer: NodeJS.Timeout | undefined;
}

/** Where the event stream of a sandbox stands; kept across disconnects so a reconnect resumes, not replays. */
interface EventCursor {
  bootId: string;
  lastSeq: number;
}

/**
 * The Agent port over gRPC. One relay + one grpc-js client per connected sandbox; grpc-js reconnects through the relay
 * (each time with a fresh handshake) when the channel drops. Errors: NotFound / InvalidState / InvalidArgument /
 * AlreadyExists rebuilt from the agent's metadata, Timeout for deadlines, AgentError for the rest, naming the RPC.
 */
export class GrpcAgent implements Agent {
  readonly #logger: Logger;
  readonly #callDeadlineMs: number;
  readonly #connectDeadlineMs: number;
  readonly #keepaliveMs: number;
  readonly #outputBufferBytes: number;
  readonly #service: AgentServiceDefinition;
  readonly #connections = new Map<string, Connection>();
  readonly #subjects = new Map<string, Subject<AgentEvent>>();
  readonly #cursors = new Map<string, EventCursor>();

  constructor(options: GrpcAgentOptions = {}) {
    this.#logger = options.logger ?? pino({ level: 'silent' });
    this.#callDeadlineMs = options.callDeadlineMs ?? 30_000;
    this.#connectDeadlineMs = options.connectDeadlineMs ?? 60_000;
    this.#keepaliveMs = options.keepaliveMs ?? 20_000;
    this.#outputBufferBytes = options.guestOutputBufferBytes ?? 0;
    this.#service = loadAgentService(options.protoPath ?? defaultProtoPath());
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
    const deadlineMs = options.deadlineMs ?? this.#connectDeadlineMs;
    const deadline = Date.now() + deadlineMs;
    const logger = this.#logger.child({ sandboxId });
    const relay = await AgentRelay.open({ agentSocket, logger });
    const client = new Client(relay.target, credentials.createInsecure(), {
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      'grpc.enable_retries': 0,
      'grpc.keepalive_time_ms': this.#keepaliveMs,
      'grpc.keepalive_timeout_ms': Math.max(2_000, Math.min(10_000, this.#keepaliveMs)),
      'grpc.keepalive_permit_without_calls': 1,
      // The serial channel's round trip is long (tens of ms under TCG): a 64 KiB window would cap output at ~1 MiB/s.
      'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES,
    });
    const connection: Connection = {
      sandboxId,
      agentSocket,
      relay,
      client,
      outputPort: options.outputSocket
        ? new OutputPortLink({
            socketPath: options.outputSocket,
            logger,
            openSession: async (token) => {
              await this.#unary(sandboxId, 'OpenOutputPort', { token }, 10_000);
            },
          })
        : undefined,
      closed: false,
      eventsCall: undefined,
      retryTimer: undefined,
    };
    this.#connections.set(sandboxId, connection);
    let lastError: unknown;
    for (;;) {
      if (options.signal?.aborted) {
        await this.disconnect(sandboxId);
        throw new AgentError('agent connect', 'aborted', { sandboxId });
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        await this.disconnect(sandboxId);
        const reason = lastError instanceof Error ? lastError.message : String(lastError);
        throw new Timeout('agent connect', deadlineMs, { sandboxId, agentSocket, lastError: reason });
      }
      try {
        const answer = await this.#unary(sandboxId, 'Check', {}, Math.min(remaining, 5_000));
        this.#noteBoot(sandboxId, answer.bootId);
        break;
      } catch (err) {
        lastError = err;
        await sleep(Math.min(200, Math.max(0, deadline - Date.now())), options.signal);
      }
    }
    logger.info({ step: 'agent connect', handshakes: relay.handshakes }, 'agent connected');
    this.#followEvents(connection);
    // Opened now, not at the first read: a write an earlier host left blocked on the port drains into this one.
    void connection.outputPort?.current();
  }

  async disconnect(sandboxId: string): Promise<void> {
    const connection = this.#connections.get(sandboxId);
    if (!connection) return;
    this.#connections.delete(sandboxId);
    connection.closed = true;
    clearTimeout(connection.retryTimer);
    connection.eventsCall?.cancel();
    connection.outputPort?.close();
    connection.client.close();
    await connection.relay.close();
  }

  /** Disconnects every sandbox. */
  async close(): Promise<void> {
    await Promise.all([...this.#connections.keys()].map((id) => this.disconnect(id)));
  }

  async check(sandboxId: string): Promise<{ version: string }> {
    const answer = await this.#unary(sandboxId, 'Check', {});
    this.#noteBoot(sandboxId, answer.bootId);
    return { version: answer.version };
  }

  async createSandbox(sandboxId: string, request: CreateSandboxRequest): Promise<void> {
    await this.#unary(sandboxId, 'CreateSandbox', {
      hostname: request.hostname ?? '',
      dns: request.dns ?? [],
      sandboxPidns: request.sandboxPidNs ?? false,
      storages: (request.storages ?? []).map((s) => ({ ...s, options: [...s.options] })),
      outputBufferBytes: this.#outputBufferBytes,
    });
  }

  /**
   * Kills every container; the agent then exits 0 and the guest powers off. Disconnects afterwards: the agent can only
   * exit once its blocked read on the port returns, which happens when the host side goes away.
   */
  async destroySandbox(sandboxId: string): Promise<void> {
    await this.#unary(sandboxId, 'DestroySandbox', {}, Math.max(this.#callDeadlineMs, 60_000));
    await this.disconnect(sandboxId);
  }

  async createContainer(sandboxId: string, request: CreateContainerRequest): Promise<{ pid: number }> {
    const answer = await this.#unary(
      sandboxId,
      'CreateContainer',
      {
        containerId: request.containerId,
        bundle: request.bundle,
        process: request.process ? toWireProcess(request.process) : undefined,
        resources: request.resources ? toWireResources(request.resources) : undefined,
      },
      Math.max(this.#callDeadlineMs, 90_000),
    );
    return { pid: answer.pid };
  }

  async startContainer(sandboxId: string, containerId: string): Promise<void> {
    await this.#unary(sandboxId, 'StartContainer', { containerId }, Math.max(this.#callDeadlineMs, 90_000));
  }

  async removeContainer(sandboxId: string, containerId: string, timeoutMs?: number): Promise<void> {
    await this.#unary(
      sandboxId,
      'RemoveContainer',
      { containerId, timeoutMs: timeoutMs ?? 0 },
      this.#callDeadlineMs + (timeoutMs ?? 10_000),
    );
  }

  async pauseContainer(sandboxId: string, containerId: string): Promise<void> {
    await this.#unary(sandboxId, 'PauseContainer', { containerId });
  }

  async resumeContainer(sandboxId: string, containerId: string): Promise<void> {
    await this.#unary(sandboxId, 'ResumeContainer', { containerId });
  }

  async listContainers(sandboxId: string): Promise<ContainerInfo[]> {
    const answer = await this.#unary(sandboxId, 'ListContainers', {});
    return answer.containers.map((container) => ({
      containerId: container.containerId,
      status: container.status as ContainerInfo['status'],
      ...(container.pid > 0 ? { pid: container.pid } : {}),
      ...(container.exit ? { exit: toExit(container.exit) } : {}),
      processes: container.processes.map((process) => ({
        execId: process.execId,
        running: process.running,
        ...(process.exit ? { exit: toExit(process.exit) } : {}),
      })),
    }));
  }

  async execProcess(sandboxId: string, request: ExecRequest): Promise<{ pid: number }> {
    const answer = await this.#unary(
      sandboxId,
      'ExecProcess',
      { containerId: request.containerId, execId: request.execId, process: toWireProcess(request.process) },
      Math.max(this.#callDeadlineMs, 90_000),
    );
    return { pid: answer.pid };
  }

  async signalProcess(
    sandboxId: string,
    containerId: string,
    execId: string,
    signal: string,
    all?: boolean,
  ): Promise<void> {
    await this.#unary(sandboxId, 'SignalProcess', { containerId, execId, signal, all: all ?? false });
  }

  /** Long polls in renewed calls (each with a deadline) and rides out reconnects until the process exits. */
  async waitProcess(sandboxId: string, containerId: string, execId: string): Promise<ExitStatus> {
    for (;;) {
      try {
        const answer = await this.#unary(sandboxId, 'WaitProcess', { containerId, execId }, WAIT_POLL_MS);
        if (answer.status) return toExit(answer.status);
      } catch (err) {
        const retriable =
          err instanceof Timeout || (err instanceof AgentError && this.#connections.has(sandboxId));
        if (!retriable) throw err;
        await sleep(300);
      }
    }
  }

  async writeStdin(
    sandboxId: string,
    containerId: string,
    execId: string,
    data: Uint8Array,
  ): Promise<number> {
    const answer = await this.#unary(sandboxId, 'WriteStdin', {
      containerId,
      execId,
      data: Buffer.from(data),
    });
    return answer.length;
  }

  async closeStdin(sandboxId: string, containerId: string, execId: string): Promise<void> {
    await this.#unary(sandboxId, 'CloseStdin', { containerId, execId });
  }

  readStdout(sandboxId: string, containerId: string, execId: string): Observable<Uint8Array> {
    return this.#output(sandboxId, 'ReadStdout', containerId, execId, 0).pipe(map((chunk) => chunk.data));
  }

  readStderr(sandboxId: string, containerId: string, execId: string): Observable<Uint8Array> {
    return this.#output(sandboxId, 'ReadStderr', containerId, execId, 0).pipe(map((chunk) => chunk.data));
  }

  readOutput(
    sandboxId: string,
    containerId: string,
    execId: string,
    stream: 'stdout' | 'stderr',
    offset: number,
  ): Observable<AgentOutputChunk> {
    const rpc = stream === 'stdout' ? 'ReadStdout' : 'ReadStderr';
    return this.#output(sandboxId, rpc, containerId, execId, offset);
  }

  async ttyWinResize(sandboxId: string, containerId: string, execId: string, rows: number, cols: number) {
    await this.#unary(sandboxId, 'TtyWinResize', { containerId, execId, rows, cols });
  }

  async listProcesses(
    sandboxId: string,
    containerId: string,
    format: 'json' | 'table',
    args?: readonly string[],
  ): Promise<{ processes: ProcessInfo[]; table?: string }> {
    const answer = await this.#unary(sandboxId, 'ListProcesses', { containerId, format, args: args ?? [] });
    return {
      processes: answer.processes.map((p) => ({
        pid: p.pid,
        command: p.command,
        ...(p.user ? { user: p.user } : {}),
      })),
      ...(format === 'table' ? { table: answer.table } : {}),
    };
  }

  async updateContainer(
    sandboxId: string,
    containerId: string,
    resources: ContainerResources,
  ): Promise<void> {
    await this.#unary(sandboxId, 'UpdateContainer', { containerId, resources: toWireResources(resources) });
  }

  async statsContainer(sandboxId: string, containerId: string): Promise<ContainerStats> {
    const { stats } = await this.#unary(sandboxId, 'StatsContainer', { containerId });
    if (!stats) throw new AgentError('agent StatsContainer', 'empty answer', { sandboxId, containerId });
    return {
      cpuUsageUsec: stats.cpuUsageUsec,
      memoryUsageBytes: stats.memoryUsageBytes,
      ...(stats.memoryLimitBytes > 0 ? { memoryLimitBytes: stats.memoryLimitBytes } : {}),
      pids: stats.pids,
      ioReadBytes: stats.ioReadBytes,
      ioWriteBytes: stats.ioWriteBytes,
    };
  }

  async onlineCpuMem(sandboxId: string, options: { cpus?: number; memory?: boolean }): Promise<void> {
    await this.#unary(sandboxId, 'OnlineCPUMem', {
      cpus: options.cpus ?? 0,
      memory: options.memory ?? false,
    });
  }

  async memHotplugByProbe(sandboxId: string, addresses: readonly number[]): Promise<void> {
    await this.#unary(sandboxId, 'MemHotplugByProbe', { addresses });
  }

  async getGuestDetails(sandboxId: string): Promise<GuestDetails> {
    return this.#unary(sandboxId, 'GetGuestDetails', {});
  }

  async setGuestDateTime(sandboxId: string, date: Date): Promise<void> {
    const ms = date.getTime();
    await this.#unary(sandboxId, 'SetGuestDateTime', {
      sec: Math.floor(ms / 1000),
      usec: (ms % 1000) * 1000,
    });
  }

  async copyFile(sandboxId: string, path: string, data: Uint8Array, mode?: number): Promise<void> {
    await this.#unary(sandboxId, 'CopyFile', { path, data: Buffer.from(data), mode: mode ?? 0 });
  }

  async reseedRandomDev(sandboxId: string, seed: Uint8Array): Promise<void> {
    await this.#unary(sandboxId, 'ReseedRandomDev', { data: Buffer.from(seed) });
  }

  async listInterfaces(sandboxId: string): Promise<NetInterface[]> {
    const answer = await this.#unary(sandboxId, 'ListInterfaces', {});
    return answer.interfaces.map(fromWireInterface);
  }

  async updateInterface(sandboxId: string, iface: NetInterface): Promise<NetInterface> {
    const answer = await this.#unary(sandboxId, 'UpdateInterface', {
      interface: {
        name: iface.name,
        mac: iface.mac ?? '',
        mtu: iface.mtu ?? 0,
        addresses: iface.addresses,
        up: iface.up ?? true,
      },
    });
    return fromWireInterface(answer.interface);
  }

  async listRoutes(sandboxId: string): Promise<NetRoute[]> {
    return (await this.#unary(sandboxId, 'ListRoutes', {})).routes.map(fromWireRoute);
  }

  async updateRoutes(sandboxId: string, routes: readonly NetRoute[]): Promise<NetRoute[]> {
    const answer = await this.#unary(sandboxId, 'UpdateRoutes', {
      routes: routes.map((r) => ({
        dest: r.dest,
        gateway: r.gateway ?? '',
        device: r.device ?? '',
        source: r.source ?? '',
      })),
    });
    return answer.routes.map(fromWireRoute);
  }

  async getMetrics(sandboxId: string): Promise<string> {
    return (await this.#unary(sandboxId, 'GetMetrics', {})).metrics;
  }

  events(sandboxId: string): Observable<AgentEvent> {
    return this.#subjectOf(sandboxId).asObservable();
  }

  // ---- plumbing ----

  #subjectOf(sandboxId: string): Subject<AgentEvent> {
    let subject = this.#subjects.get(sandboxId);
    if (!subject) {
      subject = new Subject<AgentEvent>();
      this.#subjects.set(sandboxId, subject);
    }
    return subject;
  }

  /** A different boot id means a new agent process: its event numbers start over. */
  #noteBoot(sandboxId: string, bootId: string): void {
    const cursor = this.#cursors.get(sandboxId);
    if (!cursor || cursor.bootId !== bootId) this.#cursors.set(sandboxId, { bootId, lastSeq: 0 });
  }

  #connection(sandboxId: string, rpc: string): Connection {
    const connection = this.#connections.get(sandboxId);
    if (!connection) throw new AgentError(`agent ${rpc}`, 'not connected', { sandboxId });
    return connection;
  }

  /** One RPC with a deadline; read-only RPCs are resent (within the same deadline) when the transport dropped. */
  async #unary<K extends UnaryMethodName>(
    sandboxId: string,
    rpc: K,
    request: Outgoing<RequestOf<K>>,
    deadlineMs = this.#callDeadlineMs,
  ): Promise<ResponseOf<K>> {
    const deadline = Date.now() + deadlineMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#unaryOnce(sandboxId, rpc, request, Math.max(1, deadline - Date.now()), deadlineMs);
      } catch (err) {
        const transportDropped =
          err instanceof AgentError && err.details.grpcCode === GRPC_STATUS.UNAVAILABLE;
        if (!transportDropped || !RETRIABLE_RPCS.has(rpc) || attempt >= 3 || Date.now() + 200 > deadline)
          throw err;
        await sleep(100);
      }
    }
  }

  #unaryOnce<K extends UnaryMethodName>(
    sandboxId: string,
    rpc: K,
    request: Outgoing<RequestOf<K>>,
    remainingMs: number,
    deadlineMs: number,
  ): Promise<ResponseOf<K>> {
    const connection = this.#connection(sandboxId, rpc);
    const method = this.#service[rpc] as unknown as MethodDefinition<Outgoing<RequestOf<K>>, ResponseOf<K>>;
    return new Promise((resolve, reject) => {
      connection.client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        request,
        new Metadata(),
        { deadline: Date.now() + remainingMs },
        (err, response) => {
          if (err || response === undefined) reject(agentErrorOf(err, rpc, sandboxId, deadlineMs));
          else resolve(response);
        },
      );
    });
  }

  #stream<K extends StreamMethodName>(
    connection: Connection,
    rpc: K,
    request: Outgoing<RequestOf<K>>,
  ): ClientReadableStream<ResponseOf<K>> {
    const method = this.#service[rpc] as unknown as MethodDefinition<Outgoing<RequestOf<K>>, ResponseOf<K>>;
    return connection.client.makeServerStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      new Metadata(),
    );
  }

  #output(
    sandboxId: string,
    rpc: 'ReadStdout' | 'ReadStderr',
    containerId: string,
    execId: string,
    from: number,
  ): Observable<AgentOutputChunk> {
    return followOutput(rpc, sandboxId, from, (offset, sink) => {
      const connection = this.#connections.get(sandboxId);
      if (!connection) return undefined;
      return readOutputOnce(
        rpc,
        sandboxId,
        connection.outputPort,
        (port) =>
          this.#stream(connection, rpc, {
            containerId,
            execId,
            offset,
            ...(port ? { outputPortToken: port.token, portSubscription: port.subscription } : {}),
          }),
        sink,
      );
    });
  }

  /** Keeps StreamEvents open while connected, resuming after the last seq seen. */
  #followEvents(connection: Connection): void {
    if (connection.closed) return;
    const { sandboxId } = connection;
    const subject = this.#subjectOf(sandboxId);
    const cursor = this.#cursors.get(sandboxId) ?? { bootId: '', lastSeq: 0 };
    this.#cursors.set(sandboxId, cursor);
    const call = this.#stream(connection, 'StreamEvents', { afterSeq: cursor.lastSeq });
    connection.eventsCall = call;
    call.on('data', (message: WireAgentEvent) => {
      const current = this.#cursors.get(sandboxId)!;
      if (message.bootId !== current.bootId) {
        current.bootId = message.bootId;
        current.lastSeq = 0;
      }
      if (message.seq <= current.lastSeq) return;
      current.lastSeq = message.seq;
      if (message.processExited) {
        subject.next({
          type: 'processExited',
          containerId: message.processExited.containerId,
          execId: message.processExited.execId,
          status: toExit(message.processExited.status),
        });
      } else if (message.oom) {
        subject.next({ type: 'oom', containerId: message.oom.containerId });
      }
    });
    // Learn the boot id first (Check) before following again: a restarted agent numbers its events from 1 again.
    const followAgain = (delayMs: number) => {
      if (connection.closed) return;
      connection.retryTimer = setTimeout(() => {
        this.check(sandboxId).then(
          () => this.#followEvents(connection),
          () => followAgain(1000),
        );
      }, delayMs);
    };
    const dropped = () => {
      if (connection.closed || connection.eventsCall !== call) return;
      connection.eventsCall = undefined;
      followAgain(500);
    };
    call.on('error', dropped);
    call.on('end', dropped);
  }
}

/** A GrpcAgent with the given options. */
export function createGrpcAgent(options?: GrpcAgentOptions): GrpcAgent {
  return new GrpcAgent(options);
}
