// The JSON-RPC 2.0 server on a unix socket: framing, limits, validation, batches, per-connection subscriptions.
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import {
  createJSONRPCErrorResponse,
  JSONRPCErrorException,
  type JSONRPCErrorResponse,
  type JSONRPCResponse,
  JSONRPCServer,
} from 'json-rpc-2.0';
import pino from 'pino';
import { z } from 'zod';
import type { Runtime } from '../actors/index.js';
import { SandboxdError } from '../errors/index.js';
import type { EventEnvelope } from '../events/index.js';
import type { Accel } from '../hypervisor/index.js';
import type { OutputKeeper } from '../logs/index.js';
import type { TemplateStore } from '../templates/index.js';
import {
  invalidParamsError,
  RPC_INVALID_REQUEST,
  RPC_METHOD_NOT_FOUND,
  RPC_PARSE_ERROR,
  toRpcError,
} from './errors.js';
import { LineDecoder, MAX_MESSAGE_BYTES } from './framing.js';
import {
  type ConnectionContext,
  type DaemonFacts,
  type EventLogReader,
  type MethodContext,
  methodTable,
  type SubscriptionSpec,
  type TransitionProblem,
} from './methods/index.js';
import type { ApiTraffic, MethodTraffic } from './metrics.js';

export interface ApiServerOptions {
  readonly runtime: Runtime;
  readonly events: EventLogReader;
  readonly facts: DaemonFacts;
  /** The hypervisor's accelerator, for daemon.info (probed once by the hypervisor). */
  readonly accel?: () => Promise<Accel>;
  readonly logger?: pino.Logger;
  /** The machines' log/machine agreement check, for events.verify. */
  readonly checkTransitions?: (events: readonly EventEnvelope[]) => readonly TransitionProblem[];
  /** Host logs of process output, for exec.output (absent: read from the guest). */
  readonly logs?: OutputKeeper;
  /** The VM templates (template.*). */
  readonly templates?: TemplateStore;
  /** Largest accepted request line (default 1 MiB). */
  readonly maxMessageBytes?: number;
  /** Bytes a connection may have queued before its subscriptions are dropped (default 4 MiB). */
  readonly subscriberQueueBytes?: number;
  /** Requests one connection may have in flight before the server stops reading it (default 256). */
  readonly maxInFlightPerConnection?: number;
}

export interface ApiServer {
  /** Listens on `socketPath` (mode 0600). A stale socket file is replaced; a live one is refused. */
  listen(socketPath: string): Promise<void>;
  /**
   * Stops accepting, lets in-flight commands finish (up to graceMs, default 30 s), then closes every
   * connection (pending waits end with it).
   */
  close(options?: { graceMs?: number }): Promise<void>;
  readonly connections: number;
  readonly inFlight: number;
  /** Connections, requests in flight, and requests answered per method (for metrics). */
  traffic(): ApiTraffic;
}

interface Connection {
  readonly id: number;
  readonly socket: Socket;
  readonly subscriptions: Map<string, { spec: SubscriptionSpec; teardown?: () => void; ended: boolean }>;
  inFlight: number;
  nextSub: number;
  /** The client half-closed (or hung up): the server ends too once nothing is in flight. */
  readEnded: boolean;
}

/**
 * Where `value` has an own `__proto__` key (JSON.parse makes one), if anywhere: zod would silently drop
 * such a key from a record, so the log would hold something else than what was accepted.
 */
function protoKeyPath(value: unknown, path: (string | number)[] = []): (string | number)[] | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = protoKeyPath(value[i], [...path, i]);
      if (found) return found;
    }
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (key === '__proto__') return [...path, key];
    const found = protoKeyPath((value as Record<string, unknown>)[key], [...path, key]);
    if (found) return found;
  }
  return undefined;
}

/** Methods that only wait for something; a shutdown ends them instead of waiting for them. */
const WAITS = new Set(['container.wait', 'exec.wait', 'exec.output']);

/** Thrown by handlers for protocol-level errors so the mapper keeps code and data as given. */
const asException = (e: { code: number; message: string; data?: unknown }) =>
  new JSONRPCErrorException(e.message, e.code, e.data);

/** The entity ids of a request, for structured logs (sandboxId, containerId, execId). */
function idsOf(params: unknown): Record<string, string> {
  if (typeof params !== 'object' || params === null) return {};
  const p = params as Record<string, unknown>;
  const out: Record<string, string> = {};
  const sandboxId =
    p.sandboxId ?? (p.containerId === undefined && typeof p.id === 'string' ? p.id : undefined);
  if (typeof sandboxId === 'string') out.sandboxId = sandboxId;
  const containerId = p.containerId ?? (p.sandboxId !== undefined ? p.id : undefined);
  if (typeof containerId === 'string') out.containerId = containerId;
  if (typeof p.execId === 'string' && p.execId !== '') out.execId = p.execId;
  return out;
}

/** Is a live server answering on this socket path? (A stale file from a crashed daemon refuses.) */
export function socketIsLive(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(true);
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

/** Creates the API server; nothing listens until `listen`. */
export function createApiServer(options: ApiServerOptions): ApiServer {
  const logger = options.logger ?? pino({ level: 'silent' });
  const maxBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  const queueBytes = options.subscriberQueueBytes ?? 4 * 1024 * 1024;
  const maxInFlight = options.maxInFlightPerConnection ?? 256;
  const connections = new Set<Connection>();
  let inFlight = 0;
  let commands = 0;
  let nextConnId = 1;
  let server: Server | undefined;
  let closing = false;
  const idleWaiters: (() => void)[] = [];

  const rpc = new JSONRPCServer<MethodContext>({
    errorListener: (message, data) => logger.debug({ err: data }, message),
  });
  rpc.mapErrorToJSONRPCErrorResponse = (id, error): JSONRPCErrorResponse => {
    if (error instanceof JSONRPCErrorException)
      return createJSONRPCErrorResponse(id, error.code, error.message, error.data);
    const e = toRpcError(error);
    if (!(error instanceof SandboxdError)) logger.error({ err: error }, 'unexpected error in a method');
    return createJSONRPCErrorResponse(id, e.code, e.message, e.data);
  };
  const requests = new Map<string, MethodTraffic>();
  for (const spec of methodTable.values()) {
    const counted: MethodTraffic = { ok: 0, error: 0, seconds: 0 };
    requests.set(spec.name, counted);
    rpc.addMethod(spec.name, async (params: unknown, ctx: MethodContext) => {
      const started = performance.now();
      const poisoned = protoKeyPath(params);
      if (poisoned) {
        counted.error++;
        throw asException(
          invalidParamsError(
            new z.ZodError([
              { code: 'custom', path: poisoned, message: '__proto__ is not a usable key', input: undefined },
            ]),
            params,
          ),
        );
      }
      // params is always an object (docs/api.md): none at all reads as {}, so a missing id is "required".
      const given = params ?? {};
      const parsed = spec.params.safeParse(given);
      if (!parsed.success) {
        counted.error++;
        throw asException(invalidParamsError(parsed.error, given));
      }
      const log = logger.isLevelEnabled('debug')
        ? logger.child({ method: spec.name, conn: ctx.connection.id, ...idsOf(parsed.data) })
        : undefined;
      try {
        const result = (await spec.handler(parsed.data, ctx)) ?? null;
        counted.ok++;
        log?.debug({ ms: Math.round(performance.now() - started) }, 'request done');
        return result;
      } catch (err) {
        counted.error++;
        log?.debug({ ms: Math.round(performance.now() - started), err }, 'request failed');
        throw err;
      } finally {
        counted.seconds += (performance.now() - started) / 1000;
      }
    });
  }
  const traffic = (): ApiTraffic => ({ connections: connections.size, inFlight, requests });

  function write(conn: Connection, message: unknown): void {
    if (conn.socket.destroyed || !conn.socket.writable) return;
    // A client that stopped reading its responses altogether is cut off rather than buffered forever.
    if (conn.socket.writableLength > 16 * queueBytes) {
      logger.warn(
        { conn: conn.id, queued: conn.socket.writableLength },
        'client not reading: connection dropped',
      );
      conn.socket.destroy();
      return;
    }
    conn.socket.write(`${JSON.stringify(message)}\n`);
  }

  function endSubscription(conn: Connection, id: string): boolean {
    const sub = conn.subscriptions.get(id);
    if (!sub) return false;
    conn.subscriptions.delete(id);
    sub.ended = true;
    sub.teardown?.();
    return true;
  }

  /**
   * A client that sent EOF gets the answer to every request it sent, then the server's EOF. EOF reads the
   * same for a half-close and a hang-up, so its subscriptions end there: a gone client's would linger.
   */
  function endIfDone(conn: Connection): void {
    if (!conn.readEnded || conn.socket.destroyed) return;
    for (const id of [...conn.subscriptions.keys()]) endSubscription(conn, id);
    if (conn.inFlight === 0) conn.socket.end();
  }

  function connectionContext(conn: Connection): ConnectionContext {
    return {
      id: conn.id,
      subscribe(spec) {
        const id = `${spec.kind}-${conn.id}-${conn.nextSub++}`;
        const entry: { spec: SubscriptionSpec; teardown?: () => void; ended: boolean } = {
          spec,
          ended: false,
        };
        conn.subscriptions.set(id, entry);
        const emit = (method: string, params: Record<string, unknown>): boolean => {
          if (entry.ended) return false;
          if (conn.socket.writableLength > queueBytes) {
            const queued = conn.socket.writableLength;
            endSubscription(conn, id);
            logger.warn({ conn: conn.id, subscription: id, queued }, 'slow subscriber dropped');
            write(conn, {
              jsonrpc: '2.0',
              method: 'subscription.dropped',
              params: {
                subscription: id,
                kind: spec.kind,
                reason: `slow consumer: ${queued} bytes queued (limit ${queueBytes})`,
                ...spec.noticeData?.(),
              },
            });
            return false;
          }
          write(conn, { jsonrpc: '2.0', method, params: { subscription: id, ...params } });
          return true;
        };
        const end = (method: string, params: Record<string, unknown>): void => {
          if (entry.ended) return;
          write(conn, { jsonrpc: '2.0', method, params: { subscription: id, ...params } });
          endSubscription(conn, id);
        };
        // The response with the subscription id must reach the client before the first notification.
        setImmediate(() => {
          if (entry.ended) return;
          const teardown = spec.start(emit, end);
          if (entry.ended) teardown();
          else entry.teardown = teardown;
        });
        return id;
      },
      unsubscribe: (id) => endSubscription(conn, id),
    };
  }

  function invalidRequest(item: unknown): JSONRPCResponse | undefined {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      return createJSONRPCErrorResponse(null, RPC_INVALID_REQUEST, 'invalid request: not an object', {
        code: 'InvalidArgument',
        field: 'request',
      });
    }
    const r = item as Record<string, unknown>;
    const idOk = r.id === undefined || r.id === null || typeof r.id === 'string' || typeof r.id === 'number';
    const id = idOk ? ((r.id ?? null) as string | number | null) : null;
    const bad = (field: string, why: string) =>
      createJSONRPCErrorResponse(id, RPC_INVALID_REQUEST, `invalid request: ${field} ${why}`, {
        code: 'InvalidArgument',
        field,
      });
    if (r.jsonrpc !== '2.0') return bad('jsonrpc', 'must be "2.0"');
    if (typeof r.method !== 'string') return bad('method', 'must be a string');
    if (!idOk) return bad('id', 'must be a string, number or null');
    if (r.params !== undefined && (typeof r.params !== 'object' || r.params === null)) {
      return bad('params', 'must be an object');
    }
    return undefined;
  }

  async function handleOne(item: unknown, ctx: MethodContext): Promise<JSONRPCResponse | null> {
    const refused = invalidRequest(item);
    if (refused) return refused;
    const request = item as { method: string; id?: unknown };
    if (closing) {
      if (request.id === undefined) return null;
      return createJSONRPCErrorResponse(
        request.id as string | number | null,
        -32000,
        'sandboxd is shutting down',
        { code: 'Internal' },
      );
    }
    const response = (await rpc.receive(
      item as Parameters<typeof rpc.receive>[0],
      ctx,
    )) as JSONRPCResponse | null;
    // The library answers an unknown method bare; every other error of ours carries data.code.
    if (response?.error?.code === RPC_METHOD_NOT_FOUND && response.error.data === undefined) {
      response.error.data = { code: 'InvalidArgument', field: 'method' };
      response.error.message = `method not found: ${request.method}`;
    }
    return response;
  }

  /** Waits (container.wait, exec.wait, exec.output) change nothing: shutdown does not wait for them. */
  function isCommand(payload: unknown): boolean {
    const methodOf = (x: unknown) =>
      typeof x === 'object' && x !== null ? (x as { method?: unknown }).method : undefined;
    const items = Array.isArray(payload) ? payload : [payload];
    return items.some((x) => {
      const m = methodOf(x);
      return typeof m !== 'string' || !WAITS.has(m);
    });
  }

  async function handleLine(conn: Connection, ctx: MethodContext, line: string): Promise<void> {
    let payload: unknown;
    try {
      payload = JSON.parse(line);
    } catch {
      write(
        conn,
        createJSONRPCErrorResponse(null, RPC_PARSE_ERROR, 'parse error: not valid JSON', {
          code: 'InvalidArgument',
        }),
      );
      return;
    }
    // Counted until the answer is written, so a graceful close never cuts a command's response.
    const command = isCommand(payload);
    if (command) commands++;
    try {
      await answer(conn, ctx, payload);
    } finally {
      if (command && --commands === 0) for (const w of idleWaiters.splice(0)) w();
    }
  }

  async function answer(conn: Connection, ctx: MethodContext, payload: unknown): Promise<void> {
    if (Array.isArray(payload)) {
      if (payload.length === 0) {
        write(
          conn,
          createJSONRPCErrorResponse(null, RPC_INVALID_REQUEST, 'invalid request: empty batch', {
            code: 'InvalidArgument',
            field: 'request',
          }),
        );
        return;
      }
      const responses = (await Promise.all(payload.map((item) => handleOne(item, ctx)))).filter(
        (r): r is JSONRPCResponse => r !== null,
      );
      if (responses.length > 0) write(conn, responses);
      return;
    }
    const response = await handleOne(payload, ctx);
    if (response) write(conn, response);
  }

  function settle(conn: Connection): void {
    inFlight--;
    conn.inFlight--;
    if (conn.inFlight < maxInFlight && conn.socket.isPaused() && !conn.socket.destroyed) conn.socket.resume();
    endIfDone(conn);
  }

  function onConnection(socket: Socket): void {
    const conn: Connection = {
      id: nextConnId++,
      socket,
      subscriptions: new Map(),
      inFlight: 0,
      nextSub: 1,
      readEnded: false,
    };
    connections.add(conn);
    const ctx: MethodContext = {
      runtime: options.runtime,
      events: options.events,
      facts: options.facts,
      connection: connectionContext(conn),
      traffic,
      ...(options.checkTransitions ? { checkTransitions: options.checkTransitions } : {}),
      ...(options.accel ? { accel: options.accel } : {}),
      ...(options.logs ? { logs: options.logs } : {}),
      ...(options.templates ? { templates: options.templates } : {}),
    };
    const decoder = new LineDecoder(
      maxBytes,
      (line) => {
        inFlight++;
        conn.inFlight++;
        if (conn.inFlight >= maxInFlight) socket.pause();
        handleLine(conn, ctx, line)
          .catch((err) => logger.error({ err, conn: conn.id }, 'request handling failed'))
          .finally(() => settle(conn));
      },
      (size) => {
        logger.warn({ conn: conn.id, size }, 'request over the size limit refused');
        write(
          conn,
          createJSONRPCErrorResponse(
            null,
            RPC_INVALID_REQUEST,
            `invalid request: larger than ${maxBytes} bytes`,
            {
              code: 'InvalidArgument',
              field: 'request',
              limit: maxBytes,
            },
          ),
        );
      },
    );
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    socket.on('end', () => {
      conn.readEnded = true;
      decoder.end();
      endIfDone(conn);
    });
    socket.on('error', (err) => logger.debug({ err, conn: conn.id }, 'connection error'));
    socket.on('close', () => {
      connections.delete(conn);
      for (const id of [...conn.subscriptions.keys()]) endSubscription(conn, id);
      logger.debug({ conn: conn.id }, 'connection closed');
    });
  }

  return {
    get connections() {
      return connections.size;
    },
    get inFlight() {
      return inFlight;
    },
    traffic,
    async listen(socketPath: string) {
      await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
      if (await socketIsLive(socketPath)) {
        throw new SandboxdError(
          'StateDirInUse',
          'UNAVAILABLE',
          `socket ${socketPath} is served by a running sandboxd; stop it or choose another --socket`,
          { socket: socketPath },
        );
      }
      await unlink(socketPath).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      const srv = createServer({ allowHalfOpen: true }, onConnection);
      const oldMask = process.umask(0o177);
      try {
        await new Promise<void>((resolve, reject) => {
          srv.once('error', reject);
          srv.listen(socketPath, () => {
            srv.off('error', reject);
            resolve();
          });
        });
      } finally {
        process.umask(oldMask);
      }
      await chmod(socketPath, 0o600);
      srv.on('error', (err) => logger.error({ err }, 'api server error'));
      server = srv;
      logger.info({ socket: socketPath }, 'api listening');
    },
    async close(closeOptions) {
      closing = true;
      const srv = server;
      server = undefined;
      const closed = srv ? new Promise<void>((resolve) => srv.close(() => resolve())) : Promise.resolve();
      if (commands > 0) {
        const grace = closeOptions?.graceMs ?? 30_000;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, grace);
          idleWaiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      for (const conn of connections) {
        for (const id of [...conn.subscriptions.keys()]) endSubscription(conn, id);
        conn.socket.end();
        conn.socket.destroySoon();
      }
      // Ends connections that do not close their side promptly.
      const deadline = setTimeout(() => {
        for (const conn of connections) conn.socket.destroy();
      }, 1000);
      await closed;
      clearTimeout(deadline);
    },
  };
}
