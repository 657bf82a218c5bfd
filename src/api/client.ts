// A JSON-RPC client for the daemon's socket (used by sandboxctl, tests and benchmarks).
import { connect, type Socket } from 'node:net';
import { SandboxdError } from '../errors/index.js';
import { RpcCallError, type RpcErrorObject } from './errors.js';
import { LineDecoder } from './framing.js';

/** The daemon cannot be reached on its socket, or the connection broke before an answer. */
export class DaemonUnreachable extends SandboxdError {
  constructor(socket: string, message: string, cause?: unknown) {
    super('Internal', 'UNAVAILABLE', `sandboxd at ${socket}: ${message}`, { socket, step: 'connect' }, cause);
  }
}

export interface Notification {
  readonly method: string;
  readonly params: Record<string, unknown>;
}

export type BatchOutcome = { readonly result: unknown } | { readonly error: RpcErrorObject };

export interface ApiClient {
  /** Calls `method`; rejects with RpcCallError (the daemon's error kind) or DaemonUnreachable. */
  call<T = unknown>(method: string, params?: unknown): Promise<T>;
  /** Sends one batch; outcomes in the order of `calls`. */
  batch(calls: readonly { method: string; params?: unknown }[]): Promise<BatchOutcome[]>;
  /** Sends a notification (no id, no answer). */
  notify(method: string, params?: unknown): void;
  /** Receives every notification; returns the detach function. */
  onNotification(listener: (n: Notification) => void): () => void;
  /** Called once when the connection ends. */
  onClose(listener: (err?: Error) => void): void;
  close(): void;
  readonly socket: Socket;
}

type Pending = { resolve: (value: unknown) => void; reject: (err: Error) => void; method: string };

/** Opens a connection to the daemon at `socketPath`. */
export function connectApi(
  socketPath: string,
  options: { connectTimeoutMs?: number } = {},
): Promise<ApiClient> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new DaemonUnreachable(socketPath, 'connect timed out'));
    }, options.connectTimeoutMs ?? 5000);
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new DaemonUnreachable(socketPath, `${err.code ?? err.message} (is sandboxd running?)`, err));
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(wrap(socket, socketPath));
    });
  });
}

function wrap(socket: Socket, socketPath: string): ApiClient {
  let nextId = 1;
  const pending = new Map<number, Pending>();
  const batches = new Map<number, (responses: unknown[]) => void>();
  const listeners = new Set<(n: Notification) => void>();
  const closeListeners: ((err?: Error) => void)[] = [];
  let closedError: Error | undefined;
  let closed = false;

  const settle = (msg: { id?: unknown; result?: unknown; error?: RpcErrorObject }) => {
    if (typeof msg.id !== 'number') return;
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error) p.reject(new RpcCallError(p.method, msg.error));
    else p.resolve(msg.result);
  };

  const decoder = new LineDecoder(
    64 * 1024 * 1024,
    (line) => {
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        return;
      }
      if (Array.isArray(msg)) {
        const ids = msg
          .map((m: { id?: unknown }) => m.id)
          .filter((id): id is number => typeof id === 'number');
        const key = ids.length > 0 ? Math.min(...ids) : undefined;
        const done = key !== undefined ? batches.get(key) : undefined;
        if (done && key !== undefined) {
          batches.delete(key);
          done(msg);
        }
        return;
      }
      const m = msg as { id?: unknown; method?: unknown; params?: unknown };
      if (typeof m.method === 'string' && m.id === undefined) {
        const n = { method: m.method, params: (m.params ?? {}) as Record<string, unknown> };
        for (const l of listeners) l(n);
        return;
      }
      if (m.id === null && (msg as { error?: RpcErrorObject }).error) {
        // A protocol error the server could not tie to a request (parse error, oversized line).
        const oldest = [...pending.keys()][0];
        if (oldest !== undefined) settle({ ...(msg as object), id: oldest });
        return;
      }
      settle(msg as { id?: unknown });
    },
    () => undefined,
  );

  socket.on('data', (chunk: Buffer) => decoder.push(chunk));
  socket.on('error', (err) => {
    closedError = err;
  });
  socket.on('close', () => {
    closed = true;
    const err = new DaemonUnreachable(socketPath, 'connection closed before an answer', closedError);
    for (const p of pending.values()) p.reject(err);
    pending.clear();
    for (const done of batches.values()) done([]);
    batches.clear();
    for (const l of closeListeners) l(closedError);
  });

  const send = (payload: unknown) => {
    socket.write(`${JSON.stringify(payload)}\n`);
  };

  return {
    socket,
    call<T>(method: string, params?: unknown): Promise<T> {
      if (closed) return Promise.reject(new DaemonUnreachable(socketPath, 'connection is closed'));
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject, method });
        send({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
      });
    },
    batch(calls) {
      if (closed) return Promise.reject(new DaemonUnreachable(socketPath, 'connection is closed'));
      const first = nextId;
      const requests = calls.map((c) => ({
        jsonrpc: '2.0',
        id: nextId++,
        method: c.method,
        ...(c.params === undefined ? {} : { params: c.params }),
      }));
      return new Promise((resolve, reject) => {
        batches.set(first, (responses) => {
          if (responses.length === 0 && closed) {
            reject(new DaemonUnreachable(socketPath, 'connection closed before an answer'));
            return;
          }
          const byId = new Map(
            responses.map((r) => [(r as { id: number }).id, r as Record<string, unknown>]),
          );
          resolve(
            requests.map((req) => {
              const r = byId.get(req.id);
              if (!r) return { error: { code: -32603, message: 'no response for this request' } };
              return r.error ? { error: r.error as RpcErrorObject } : { result: r.result };
            }),
          );
        });
        send(requests);
      });
    },
    notify(method, params) {
      send({ jsonrpc: '2.0', method, ...(params === undefined ? {} : { params }) });
    },
    onNotification(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    onClose(listener) {
      if (closed) listener(closedError);
      else closeListeners.push(listener);
    },
    close() {
      socket.end();
      socket.destroySoon();
    },
  };
}
