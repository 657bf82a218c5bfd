// The host's end of the output port (wire.ts "the output port"): one connection to QEMU's socket per session, the
// bytes before OUTPUT_ACK + token dropped, then frames handed to their subscriptions as they arrive (no copy).
import { randomBytes } from 'node:crypto';
import { createConnection, type Socket } from 'node:net';
import type { Logger } from 'pino';
import {
  decodeOutputFrameHeader,
  HANDSHAKE_TOKEN_BYTES,
  OUTPUT_ACK,
  OUTPUT_FRAME_HEADER_BYTES,
  type OutputFrameHeader,
} from './wire.js';

/** Where a subscription's frames go. */
export interface PortSubscriber {
  /** Bytes of the stream at `offset` (a frame's payload may come in several pieces). */
  data(offset: number, data: Buffer): void;
  /** The stream ended at `offset`: everything before it was delivered. */
  end(offset: number): void;
  /** The session broke before the END frame (port closed, bad frame): read again from the last offset. */
  lost(reason: string): void;
}

export interface OutputPortOptions {
  /** QEMU's chardev socket of the output port. */
  readonly socketPath: string;
  /** Asks the agent to start a session with this token (OpenOutputPort); resolves once the agent wrote the ACK. */
  readonly openSession: (token: Buffer) => Promise<void>;
  readonly logger: Logger;
  /** Bound on connect + OpenOutputPort + ACK. */
  readonly timeoutMs?: number;
}

/** Stale bytes (an earlier host's frames) tolerated before the ACK. */
const MAX_STALE_BYTES = 64 * 1024 * 1024;
const ACK_BYTES = OUTPUT_ACK.length + HANDSHAKE_TOKEN_BYTES;

/** One output-port session. Once closed it stays closed: open another. */
export class OutputPortReader {
  readonly token: Buffer;
  readonly #socket: Socket;
  readonly #logger: Logger;
  readonly #subscribers = new Map<number, PortSubscriber>();
  #nextSubscription = 1;
  #closed = false;
  #header: Buffer = Buffer.alloc(0);
  /** The frame whose payload is being received, and how much of it is left. */
  #frame: { header: OutputFrameHeader; left: number } | undefined;

  private constructor(socket: Socket, token: Buffer, logger: Logger) {
    this.#socket = socket;
    this.token = token;
    this.#logger = logger;
  }

  /** Connects, opens a session and waits for its ACK. Throws (leaving nothing open) when any step fails. */
  static async open(options: OutputPortOptions): Promise<OutputPortReader> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const socket = createConnection(options.socketPath);
    socket.on('error', () => {});
    const token = randomBytes(HANDSHAKE_TOKEN_BYTES);
    const reader = new OutputPortReader(socket, token, options.logger);
    const expected = Buffer.concat([OUTPUT_ACK, token]);
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      const acked = new Promise<Buffer>((resolve, reject) => {
        let seen: Buffer = Buffer.alloc(0);
        let skipped = 0;
        const onData = (chunk: Buffer) => {
          seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
          const at = seen.indexOf(expected);
          if (at < 0) {
            const keep = Math.max(0, seen.length - (ACK_BYTES - 1));
            skipped += keep;
            seen = seen.subarray(keep);
            if (skipped > MAX_STALE_BYTES) reject(new Error(`no ACK in ${skipped} bytes`));
            return;
          }
          socket.off('data', onData);
          resolve(seen.subarray(at + ACK_BYTES));
        };
        socket.on('data', onData);
        socket.once('close', () => reject(new Error('output port closed before the ACK')));
      });
      acked.catch(() => {});
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no output port session in ${timeoutMs} ms`)), timeoutMs);
      });
      // The RPC answers once the ACK is written; the ACK itself may still be on its way.
      await Promise.race([options.openSession(token), deadline]);
      const rest = await Promise.race([acked, deadline]);
      socket.removeAllListeners('close');
      socket.on('data', (chunk: Buffer) => reader.#onBytes(chunk));
      socket.on('close', () => reader.#lose('output port closed'));
      if (rest.length > 0) reader.#onBytes(rest);
      return reader;
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** A new subscription number for a read; its frames go to `subscriber` until it ends or is removed. */
  subscribe(subscriber: PortSubscriber): number {
    const subscription = this.#nextSubscription++;
    this.#subscribers.set(subscription, subscriber);
    return subscription;
  }

  unsubscribe(subscription: number): void {
    this.#subscribers.delete(subscription);
  }

  close(): void {
    this.#lose('output port closed by the host');
  }

  #lose(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    const subscribers = [...this.#subscribers.values()];
    this.#subscribers.clear();
    if (subscribers.length > 0)
      this.#logger.info({ step: 'output port', reason }, 'output port session ended');
    for (const subscriber of subscribers) subscriber.lost(reason);
  }

  #onBytes(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.#closed) {
      const frame = this.#frame;
      if (frame) {
        const n = Math.min(frame.left, chunk.length - at);
        const offset = frame.header.offset + (frame.header.length - frame.left);
        frame.left -= n;
        if (frame.left === 0) this.#frame = undefined;
        this.#subscribers.get(frame.header.subscription)?.data(offset, chunk.subarray(at, at + n));
        at += n;
        continue;
      }
      const need = OUTPUT_FRAME_HEADER_BYTES - this.#header.length;
      const part = chunk.subarray(at, at + need);
      this.#header = this.#header.length === 0 ? part : Buffer.concat([this.#header, part]);
      at += part.length;
      if (this.#header.length < OUTPUT_FRAME_HEADER_BYTES) return;
      const header = decodeOutputFrameHeader(this.#header);
      this.#header = Buffer.alloc(0);
      if (typeof header === 'string') {
        this.#logger.warn(
          { step: 'output port', reason: header },
          'output port out of step; dropping the session',
        );
        this.#lose(header);
        return;
      }
      if (header.kind === 'end') {
        const subscriber = this.#subscribers.get(header.subscription);
        this.#subscribers.delete(header.subscription);
        subscriber?.end(header.offset);
      } else if (header.length > 0) {
        this.#frame = { header, left: header.length };
      }
    }
  }
}
