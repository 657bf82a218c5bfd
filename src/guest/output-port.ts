// The agent's end of the output port (wire.ts "the output port"): process output written as frames straight from
// the output buffers' chunks (one writev, no copy in JS), one host session at a time.
import { setMaxListeners } from 'node:events';
import { close, open, writev } from 'node:fs';
import type { Logger } from 'pino';
import { encodeOutputFrameHeader, OUTPUT_ACK } from '../agent/index.js';
import type { OutputBuffer } from './output.js';
import { SessionWrites } from './session-writes.js';

/** A write-only byte pipe to the host. A write blocks while no host is connected (virtio-serial's rule). */
export interface OutputPortDevice {
  writev(buffers: readonly Buffer[]): Promise<void>;
  close(): Promise<void>;
}

/** Linux takes at most IOV_MAX (1024) buffers per writev. */
const MAX_IOVECS = 1024;
/** Bytes per data frame: large enough to amortise a write, small enough that streams interleave. */
const FRAME_BYTES = 1024 * 1024;

/** Opens the port for writing and writes through the thread pool, going on after short writes. */
export async function openOutputPortDevice(path: string): Promise<OutputPortDevice> {
  const fd = await new Promise<number>((resolve, reject) =>
    open(path, 'w', (err, opened) => (err ? reject(err) : resolve(opened))),
  );
  const writeAll = async (buffers: readonly Buffer[]): Promise<void> => {
    let rest = [...buffers];
    while (rest.length > 0) {
      const batch = rest.slice(0, MAX_IOVECS);
      let written = await new Promise<number>((resolve, reject) =>
        writev(fd, batch, (err, n) => (err ? reject(err) : resolve(n))),
      );
      rest = rest.slice(batch.length);
      // A short write: put back what did not go, from the first buffer it stopped in.
      const unsent: Buffer[] = [];
      for (const buffer of batch) {
        if (written >= buffer.length) written -= buffer.length;
        else {
          unsent.push(buffer.subarray(written));
          written = 0;
        }
      }
      rest = [...unsent, ...rest];
    }
  };
  return { writev: writeAll, close: () => new Promise((resolve) => close(fd, () => resolve())) };
}

interface Session {
  readonly token: Buffer;
  readonly generation: number;
  readonly ended: AbortController;
  readonly subscriptions: Set<number>;
}

/**
 * Sessions and subscriptions of the output port. `open(token)` ends the previous session (its subscriptions stop)
 * and writes the ACK; `stream` writes one output stream's frames for the session that token names. Frames of an
 * ended session are never written, so a new host sees only its own after the ACK.
 */
export class OutputPort {
  readonly #device: OutputPortDevice;
  readonly #logger: Logger;
  #session: Session | undefined;
  #generation = 0;
  readonly #writes: SessionWrites;

  constructor(device: OutputPortDevice, logger: Logger) {
    this.#device = device;
    this.#logger = logger;
    this.#writes = new SessionWrites({
      write: (buffers) => device.writev(buffers),
      generation: () => this.#generation,
      onError: (err) => {
        logger.warn({ err, step: 'output port write' }, 'output port write failed');
        // The host's frames are out of step now: only a new session (a new ACK) makes sense of the port again.
        this.#session?.ended.abort();
        this.#session = undefined;
        this.#generation++;
      },
    });
  }

  /** Starts a session for `token`; resolves once its ACK is written (everything after it is this session's). */
  async open(token: Buffer): Promise<void> {
    this.#session?.ended.abort();
    const session: Session = {
      token: Buffer.from(token),
      generation: ++this.#generation,
      ended: new AbortController(),
      subscriptions: new Set(),
    };
    // Every read of the session listens on it: dozens at once are normal, not a leak.
    setMaxListeners(0, session.ended.signal);
    this.#session = session;
    this.#logger.info({ step: 'output port', generation: session.generation }, 'output port session started');
    await this.#writes.enqueue(session.generation, [OUTPUT_ACK, session.token]);
  }

  /** Whether `token` names the current session. */
  isCurrent(token: Buffer): boolean {
    return this.#session?.token.equals(token) === true;
  }

  /**
   * Writes `buffer` from `from` as frames of `subscription`, then its END frame once the process's stream finished.
   * Resolves true after the END frame was written, false when `signal` aborted or the session ended first. Throws
   * when `token` is not the current session's or the subscription is already in use.
   */
  async stream(
    token: Buffer,
    subscription: number,
    buffer: OutputBuffer,
    from: number,
    signal: AbortSignal,
  ): Promise<boolean> {
    const session = this.#session;
    if (!session?.token.equals(token)) throw new Error('not the current output port session');
    if (subscription <= 0 || session.subscriptions.has(subscription)) {
      throw new Error(`port subscription ${subscription} is invalid or in use`);
    }
    session.subscriptions.add(subscription);
    const stopping = new AbortController();
    const stop = stopping.signal;
    const onStop = () => stopping.abort();
    signal.addEventListener('abort', onStop, { once: true });
    session.ended.signal.addEventListener('abort', onStop, { once: true });
    if (signal.aborted || session.ended.signal.aborted) stopping.abort();
    // Attached, the reader holds back its unread bytes: the process waits on its pipe rather than lose output.
    const reader = buffer.attach(from);
    try {
      while (!stop.aborted) {
        const read = buffer.readParts(reader, FRAME_BYTES);
        if (read.length > 0) {
          const header = encodeOutputFrameHeader({
            subscription,
            kind: 'data',
            offset: read.offset,
            length: read.length,
          });
          await this.#writes.enqueue(session.generation, [header, ...read.parts]);
          continue;
        }
        if (buffer.finished) {
          const end = encodeOutputFrameHeader({
            subscription,
            kind: 'end',
            offset: reader.offset,
            length: 0,
          });
          await this.#writes.enqueue(session.generation, [end]);
          return !stop.aborted;
        }
        await buffer.waitForMore(reader.offset, stop);
      }
      return false;
    } finally {
      signal.removeEventListener('abort', onStop);
      session.ended.signal.removeEventListener('abort', onStop);
      buffer.detach(reader);
      session.subscriptions.delete(subscription);
    }
  }

  /**
   * Ends the session and waits (up to `timeoutMs`) for a write in flight: the agent's exit joins the thread pool,
   * so no write may still be blocked on the port once the host hangs up after DestroySandbox.
   */
  async quiesce(timeoutMs: number): Promise<void> {
    this.#session?.ended.abort();
    this.#session = undefined;
    this.#generation++;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.#writes.drained,
      new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    await this.quiesce(1_000);
    await this.#device.close();
  }
}
