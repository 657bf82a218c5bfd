// A ttrpc server: service/method dispatch of unary calls, errors as gRPC statuses, graceful close.
import { chmod } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { encodeFrame, FrameDecoder, MessageType, oversizeMessage } from './frame.js';
import { decodeRequest, encodeResponse, type Metadata } from './messages.js';
import { Code, TtrpcError } from './status.js';

export interface CallContext {
  readonly service: string;
  readonly method: string;
  readonly metadata: Metadata;
  /** Aborted at the client's deadline (timeout_nano), or when the server is closed without waiting. */
  readonly signal: AbortSignal;
}

/** A unary handler: the request payload in, the response payload out; throw a TtrpcError to choose the status. */
export type Handler = (payload: Buffer, ctx: CallContext) => Promise<Uint8Array> | Uint8Array;

export interface ServerOptions {
  /** Turns a handler's error into a status (default: TtrpcError as it is, anything else Unknown). */
  readonly toStatus?: (err: unknown) => { code: number; message: string };
  /** Told of each call that ended in error (for logs); never throws into the server. */
  readonly onCallError?: (ctx: { service: string; method: string }, err: unknown) => void;
}

function defaultStatus(err: unknown): { code: number; message: string } {
  if (err instanceof TtrpcError) return { code: err.code, message: err.message };
  return { code: Code.Unknown, message: err instanceof Error ? err.message : String(err) };
}

interface Conn {
  readonly socket: Socket;
  inFlight: number;
  lastStreamId: number;
  readonly aborts: Set<AbortController>;
}

export class TtrpcServer {
  private readonly services = new Map<string, Map<string, Handler>>();
  private readonly conns = new Set<Conn>();
  private listener: Server | undefined;
  private closing = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly options: ServerOptions = {}) {}

  /** Registers a service by its full name (`containerd.task.v2.Task`); methods by their bare names. */
  register(service: string, methods: Readonly<Record<string, Handler>>): void {
    const map = this.services.get(service) ?? new Map<string, Handler>();
    for (const [name, handler] of Object.entries(methods)) map.set(name, handler);
    this.services.set(service, map);
  }

  /** Listens on a unix socket path, made mode `mode` (0600 unless told) before anyone is told the address. */
  async listen(path: string, mode = 0o600): Promise<void> {
    const server = createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    await chmod(path, mode);
    this.listener = server;
  }

  /** Serves one connected socket (also for sockets accepted elsewhere). */
  serve(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const conn: Conn = { socket, inFlight: 0, lastStreamId: 0, aborts: new Set() };
    this.conns.add(conn);
    const send = (
      streamId: number,
      status: { code: number; message: string } | undefined,
      payload: Uint8Array,
    ) => {
      if (socket.destroyed) return;
      let frame: Buffer;
      try {
        frame = encodeFrame(streamId, MessageType.Response, 0, encodeResponse({ status, payload }));
      } catch (err) {
        frame = encodeFrame(
          streamId,
          MessageType.Response,
          0,
          encodeResponse({
            status: { code: Code.ResourceExhausted, message: (err as Error).message },
            payload: new Uint8Array(),
          }),
        );
      }
      socket.write(frame);
    };
    const refuse = (streamId: number, code: number, message: string) =>
      send(streamId, { code, message }, new Uint8Array());

    const decoder = new FrameDecoder(
      (frame) => {
        if (frame.streamId % 2 !== 1) {
          refuse(frame.streamId, Code.InvalidArgument, 'StreamID must be odd for client initiated streams');
          return;
        }
        if (frame.type === MessageType.Data) {
          // Only unary calls are served: no stream is ever open for data.
          refuse(frame.streamId, Code.InvalidArgument, 'StreamID is no longer active');
          return;
        }
        if (frame.type !== MessageType.Request) return;
        if (frame.streamId <= conn.lastStreamId) {
          refuse(frame.streamId, Code.InvalidArgument, 'StreamID cannot be re-used and must increment');
          return;
        }
        conn.lastStreamId = frame.streamId;
        this.dispatch(conn, frame.streamId, frame.data, send);
      },
      (over) => refuse(over.streamId, Code.ResourceExhausted, oversizeMessage(over.length)),
    );
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      for (const a of conn.aborts) a.abort(new TtrpcError(Code.Canceled, 'ttrpc: connection closed'));
      this.conns.delete(conn);
      this.checkIdle();
    });
  }

  private dispatch(
    conn: Conn,
    streamId: number,
    data: Buffer,
    send: (id: number, status: { code: number; message: string } | undefined, payload: Uint8Array) => void,
  ): void {
    let req: ReturnType<typeof decodeRequest>;
    try {
      req = decodeRequest(data);
    } catch (err) {
      send(
        streamId,
        { code: Code.InvalidArgument, message: `unmarshal request error: ${(err as Error).message}` },
        new Uint8Array(),
      );
      return;
    }
    if (this.closing) {
      send(streamId, { code: Code.Unavailable, message: 'ttrpc: server closed' }, new Uint8Array());
      return;
    }
    const service = this.services.get(req.service);
    if (!service) {
      send(streamId, { code: Code.Unimplemented, message: `service ${req.service}` }, new Uint8Array());
      return;
    }
    const handler = service.get(req.method);
    if (!handler) {
      send(streamId, { code: Code.Unimplemented, message: `method ${req.method}` }, new Uint8Array());
      return;
    }
    const abort = new AbortController();
    conn.aborts.add(abort);
    conn.inFlight++;
    const timer =
      req.timeoutNano > 0n
        ? setTimeout(
            () => abort.abort(new TtrpcError(Code.DeadlineExceeded, 'context deadline exceeded')),
            Number(req.timeoutNano / 1_000_000n),
          )
        : undefined;
    const ctx: CallContext = {
      service: req.service,
      method: req.method,
      metadata: req.metadata,
      signal: abort.signal,
    };
    Promise.resolve()
      .then(() => handler(req.payload as Buffer, ctx))
      .then(
        (payload) => send(streamId, undefined, payload),
        (err: unknown) => {
          this.options.onCallError?.({ service: req.service, method: req.method }, err);
          send(streamId, (this.options.toStatus ?? defaultStatus)(err), new Uint8Array());
        },
      )
      .finally(() => {
        if (timer) clearTimeout(timer);
        conn.aborts.delete(abort);
        conn.inFlight--;
        this.checkIdle();
      });
  }

  /** Calls being handled now, over every connection. */
  get inFlight(): number {
    let n = 0;
    for (const c of this.conns) n += c.inFlight;
    return n;
  }

  /**
   * Stops accepting, answers new requests Unavailable, lets the calls in flight finish and send their
   * responses, then closes every connection. Past `timeoutMs` the calls left are aborted and cut off.
   */
  async close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.closing = true;
    const listener = this.listener;
    this.listener = undefined;
    const listenerClosed = listener ? new Promise<void>((r) => listener.close(() => r())) : Promise.resolve();
    const idle = new Promise<void>((resolve) => {
      this.idleWaiters.push(resolve);
      this.checkIdle();
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), options.timeoutMs ?? 10_000);
    });
    const outcome = await Promise.race([idle, timedOut]);
    if (timer) clearTimeout(timer);
    for (const c of this.conns) {
      if (outcome === 'timeout')
        for (const a of c.aborts) a.abort(new TtrpcError(Code.Unavailable, 'ttrpc: server closed'));
      c.socket.end();
      c.socket.destroySoon();
    }
    await listenerClosed;
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0 || this.inFlight > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
