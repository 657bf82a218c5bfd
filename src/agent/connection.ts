// The per-sandbox channels of GrpcAgent: a resync relay and a grpc-js client each, the dial that waits for the
// agent's Check, unary calls with their deadline and retries, server streams.
import {
  Client,
  type ClientReadableStream,
  credentials,
  Metadata,
  type MethodDefinition,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { AgentError, Timeout } from '../errors/index.js';
import { sleep } from '../timing/index.js';
import { agentErrorOf, GRPC_STATUS } from './grpc-errors.js';
import { OutputPortLink } from './output.js';
import { AgentRelay } from './relay.js';
import type {
  AgentServiceDefinition,
  Outgoing,
  RequestOf,
  ResponseOf,
  StreamMethodName,
  UnaryMethodName,
  WireAgentEvent,
} from './wire.js';

const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const FLOW_CONTROL_WINDOW_BYTES = 16 * 1024 * 1024;
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

/** One connected sandbox: its relay, its client, and the event stream that follows it while it is open. */
export interface Connection {
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

export interface AgentConnectionsOptions {
  readonly service: AgentServiceDefinition;
  /** Deadline of a unary call when the caller gives none. */
  readonly callDeadlineMs: number;
  /** HTTP/2 ping interval of each client. */
  readonly keepaliveMs: number;
}

export interface DialOptions {
  readonly deadlineMs: number;
  readonly signal?: AbortSignal | undefined;
  readonly outputSocket?: string | undefined;
  readonly logger: Logger;
}

/**
 * The connections of one GrpcAgent, by sandbox id. grpc-js reconnects through the relay (each time with a fresh
 * handshake) when the channel drops; calls to a sandbox that is not connected fail with AgentError.
 */
export class AgentConnections {
  readonly #service: AgentServiceDefinition;
  readonly #keepaliveMs: number;
  readonly #connections = new Map<string, Connection>();
  /** Deadline of a unary call when the caller gives none. */
  readonly callDeadlineMs: number;

  constructor(options: AgentConnectionsOptions) {
    this.#service = options.service;
    this.callDeadlineMs = options.callDeadlineMs;
    this.#keepaliveMs = options.keepaliveMs;
  }

  get(sandboxId: string): Connection | undefined {
    return this.#connections.get(sandboxId);
  }

  has(sandboxId: string): boolean {
    return this.#connections.has(sandboxId);
  }

  sandboxIds(): string[] {
    return [...this.#connections.keys()];
  }

  /**
   * Opens the relay and the client of `sandboxId` and sends Check until the agent answers: within `deadlineMs`
   * (Timeout naming the last error), or until `signal` aborts (AgentError); both close the connection again. On
   * success the connection stays registered and the Check answer is returned.
   */
  async dial(
    sandboxId: string,
    agentSocket: string,
    options: DialOptions,
  ): Promise<{ connection: Connection; check: ResponseOf<'Check'> }> {
    const { deadlineMs, logger } = options;
    const deadline = Date.now() + deadlineMs;
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
              await this.unary(sandboxId, 'OpenOutputPort', { token }, 10_000);
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
        await this.close(sandboxId);
        throw new AgentError('agent connect', 'aborted', { sandboxId });
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        await this.close(sandboxId);
        const reason = lastError instanceof Error ? lastError.message : String(lastError);
        throw new Timeout('agent connect', deadlineMs, { sandboxId, agentSocket, lastError: reason });
      }
      try {
        const check = await this.unary(sandboxId, 'Check', {}, Math.min(remaining, 5_000));
        return { connection, check };
      } catch (err) {
        lastError = err;
        await sleep(Math.min(200, Math.max(0, deadline - Date.now())), options.signal);
      }
    }
  }

  /** Forgets the connection of `sandboxId` and closes its event stream, output port, client and relay. */
  async close(sandboxId: string): Promise<void> {
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

  /** One RPC with a deadline; read-only RPCs are resent (within the same deadline) when the transport dropped. */
  async unary<K extends UnaryMethodName>(
    sandboxId: string,
    rpc: K,
    request: Outgoing<RequestOf<K>>,
    deadlineMs = this.callDeadlineMs,
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

  /** A server stream of `rpc` on `connection`; errors and the end arrive as the stream's events. */
  stream<K extends StreamMethodName>(
    connection: Connection,
    rpc: K,
    request: Outgoing<RequestOf<K>>,
  ): ClientReadableStream<ResponseOf<K>> {
    const method = this.#method(rpc);
    return connection.client.makeServerStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      request,
      new Metadata(),
    );
  }

  #unaryOnce<K extends UnaryMethodName>(
    sandboxId: string,
    rpc: K,
    request: Outgoing<RequestOf<K>>,
    remainingMs: number,
    deadlineMs: number,
  ): Promise<ResponseOf<K>> {
    const connection = this.#connections.get(sandboxId);
    if (!connection) throw new AgentError(`agent ${rpc}`, 'not connected', { sandboxId });
    const method = this.#method(rpc);
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

  #method<K extends keyof AgentServiceDefinition>(
    rpc: K,
  ): MethodDefinition<Outgoing<RequestOf<K>>, ResponseOf<K>> {
    return this.#service[rpc] as unknown as MethodDefinition<Outgoing<RequestOf<K>>, ResponseOf<K>>;
  }
}
