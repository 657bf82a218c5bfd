// A ttrpc client: unary calls over one connection, odd increasing stream ids, deadlines and cancellation.
import { connect, type Socket } from 'node:net';
import { encodeFrame, FrameDecoder, MessageType, oversizeMessage } from './frame.js';
import { decodeResponse, encodeRequest, type Metadata } from './messages.js';
import { Code, TtrpcError } from './status.js';

export interface CallOptions {
  /** Sent to the server as timeout_nano, and the local deadline of the call (DeadlineExceeded). */
  readonly timeoutMs?: number;
  /** Aborting ends the call with Canceled; the server's late answer is dropped. */
  readonly signal?: AbortSignal;
  readonly metadata?: Metadata;
}

interface Pending {
  resolve(payload: Buffer): void;
  reject(err: Error): void;
}

const MAX_STREAM_ID = 0xffffffff;

export class TtrpcClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closedWith: TtrpcError | undefined;
  private readonly closeListeners: ((err?: Error) => void)[] = [];

  /** Dials a unix socket path. */
  static connect(path: string, options: { connectTimeoutMs?: number } = {}): Promise<TtrpcClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new TtrpcError(Code.Unavailable, `ttrpc: dial ${path}: connect timed out`));
      }, options.connectTimeoutMs ?? 5000);
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new TtrpcError(Code.Unavailable, `ttrpc: dial ${path}: ${err.code ?? err.message}`));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new TtrpcClient(socket));
      });
    });
  }

  constructor(readonly socket: Socket) {
    const decoder = new FrameDecoder(
      (frame) => {
        if (frame.type !== MessageType.Response) return;
        const p = this.pending.get(frame.streamId);
        if (!p) return; // timed out or cancelled: the answer has nobody left to hear it
        this.pending.delete(frame.streamId);
        let res: ReturnType<typeof decodeResponse>;
        try {
          res = decodeResponse(frame.data);
        } catch (err) {
          p.reject(new TtrpcError(Code.Internal, `ttrpc: bad response: ${(err as Error).message}`));
          return;
        }
        if (res.status && res.status.code !== Code.OK)
          p.reject(new TtrpcError(res.status.code, res.status.message));
        else p.resolve(Buffer.from(res.payload));
      },
      (over) => {
        const p = this.pending.get(over.streamId);
        if (!p) return;
        this.pending.delete(over.streamId);
        p.reject(new TtrpcError(Code.ResourceExhausted, oversizeMessage(over.length)));
      },
    );
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    socket.on('error', () => undefined); // 'close' follows and fails what is pending
    socket.on('close', () => this.fail(new TtrpcError(Code.Unavailable, 'ttrpc: closed')));
  }

  /** One unary call: resolves with the response payload or rejects with a TtrpcError. */
  call(service: string, method: string, payload: Uint8Array, options: CallOptions = {}): Promise<Buffer> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (options.signal?.aborted) return Promise.reject(new TtrpcError(Code.Canceled, 'context canceled'));
    if (this.nextId > MAX_STREAM_ID) {
      return Promise.reject(new TtrpcError(Code.ResourceExhausted, 'ttrpc: stream IDs exhausted'));
    }
    const id = this.nextId;
    this.nextId += 2;
    const timeoutNano = options.timeoutMs ? BigInt(Math.round(options.timeoutMs * 1e6)) : 0n;
    let frame: Buffer;
    try {
      frame = encodeFrame(
        id,
        MessageType.Request,
        0,
        encodeRequest({ service, method, payload, timeoutNano, metadata: options.metadata ?? {} }),
      );
    } catch (err) {
      return Promise.reject(new TtrpcError(Code.ResourceExhausted, (err as Error).message));
    }
    return new Promise<Buffer>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => finish(new TtrpcError(Code.Canceled, 'context canceled'));
      const finish = (err: Error | undefined, value?: Buffer) => {
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        this.pending.delete(id);
        if (err) reject(err);
        else resolve(value as Buffer);
      };
      this.pending.set(id, { resolve: (v) => finish(undefined, v), reject: (e) => finish(e) });
      if (options.timeoutMs) {
        timer = setTimeout(
          () => finish(new TtrpcError(Code.DeadlineExceeded, 'context deadline exceeded')),
          options.timeoutMs,
        );
      }
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.socket.write(frame);
    });
  }

  /** Calls in flight, for tests and for a graceful shutdown of the caller. */
  get inFlight(): number {
    return this.pending.size;
  }

  onClose(listener: (err?: Error) => void): void {
    if (this.closedWith) listener(this.closedWith);
    else this.closeListeners.push(listener);
  }

  /** Closes the connection; calls in flight fail with Unavailable ("ttrpc: closed"). */
  close(): void {
    this.fail(new TtrpcError(Code.Unavailable, 'ttrpc: closed'));
    this.socket.destroy();
  }

  private fail(err: TtrpcError): void {
    if (this.closedWith) return;
    this.closedWith = err;
    for (const p of [...this.pending.values()]) p.reject(err);
    this.pending.clear();
    for (const l of this.closeListeners) l(err);
  }
}
