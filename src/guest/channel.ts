// The agent's end of the serial channel: one fd on the port, host sessions found by the resync handshake, one Duplex each.
import { close, open, read, write } from 'node:fs';
import { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { ACK_MAGIC, HANDSHAKE_TOKEN_BYTES, HTTP2_PREFACE, SYNC_MAGIC } from '../agent/index.js';
import { sleep } from '../timing/index.js';
import { SessionWrites } from './session-writes.js';

/** A byte pipe to the host. `read` resolves 0 while no host is connected (virtio-serial's EOF). */
export interface PortDevice {
  read(buffer: Buffer): Promise<number>;
  write(data: Buffer): Promise<void>;
  close(): Promise<void>;
}

/** Opens the virtio-serial port once (a second open is EBUSY) and reads/writes it through the thread pool. */
export async function openPortDevice(path: string): Promise<PortDevice> {
  const fd = await new Promise<number>((resolve, reject) =>
    open(path, 'r+', (err, opened) => (err ? reject(err) : resolve(opened))),
  );
  return {
    read: (buffer) =>
      new Promise((resolve, reject) =>
        read(fd, buffer, 0, buffer.length, null, (err, n) => (err ? reject(err) : resolve(n))),
      ),
    write: async (data) => {
      let offset = 0;
      while (offset < data.length) {
        offset += await new Promise<number>((resolve, reject) =>
          write(fd, data, offset, data.length - offset, null, (err, n) => (err ? reject(err) : resolve(n))),
        );
      }
    },
    close: () => new Promise((resolve) => close(fd, () => resolve())),
  };
}

const SYNC_FRAME_BYTES = SYNC_MAGIC.length + HANDSHAKE_TOKEN_BYTES;
const FRAME_HEADER_BYTES = 9;

/**
 * Follows HTTP/2 framing of the host's bytes in a session, only to notice a SYNC frame at a frame boundary (a new host
 * that connected before this agent saw the old one's EOF) or a session that does not start with the preface.
 */
class FrameScanner {
  #prefaceMatched = 0;
  #header = Buffer.alloc(0);
  #payloadLeft = 0;

  /** Index in `chunk` from which the bytes are not this session's (hunt for SYNC from there), or -1. */
  scan(chunk: Buffer): { from: number; carry: Buffer } | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.#prefaceMatched < HTTP2_PREFACE.length) {
        if (chunk[i] !== HTTP2_PREFACE[this.#prefaceMatched]) {
          return { from: i, carry: HTTP2_PREFACE.subarray(0, this.#prefaceMatched) };
        }
        this.#prefaceMatched++;
        i++;
        continue;
      }
      if (this.#payloadLeft > 0) {
        const n = Math.min(this.#payloadLeft, chunk.length - i);
        this.#payloadLeft -= n;
        i += n;
        continue;
      }
      const need = FRAME_HEADER_BYTES - this.#header.length;
      const part = chunk.subarray(i, i + need);
      this.#header = Buffer.concat([this.#header, part]);
      i += part.length;
      if (this.#header.length < FRAME_HEADER_BYTES) break;
      if (this.#header.equals(SYNC_MAGIC)) return { from: i, carry: SYNC_MAGIC };
      this.#payloadLeft = this.#header.readUIntBE(0, 3);
      this.#header = Buffer.alloc(0);
    }
    return undefined;
  }
}

export interface ChannelOptions {
  readonly port: PortDevice;
  readonly logger: Logger;
  /** Called with each new host session's stream (serve gRPC on it). The previous one is destroyed first. */
  readonly onSession: (stream: Duplex) => void;
  /** Delay between reads while no host is connected. */
  readonly idlePollMs?: number;
}

/**
 * Runs the channel until `stop()`: reads the port, hunts for SYNC, answers ACK, hands each session a Duplex and ends it
 * at EOF (host gone) or at the next SYNC. Writes of an ended session are dropped, never sent to a later host.
 */
export class AgentChannel {
  readonly #port: PortDevice;
  readonly #logger: Logger;
  readonly #onSession: (stream: Duplex) => void;
  readonly #idlePollMs: number;
  #generation = 0;
  #session: { stream: Duplex; generation: number; scanner: FrameScanner } | undefined;
  #hunt: Buffer = Buffer.alloc(0);
  readonly #writes: SessionWrites;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #sessions = 0;

  constructor(options: ChannelOptions) {
    this.#port = options.port;
    this.#logger = options.logger;
    this.#onSession = options.onSession;
    this.#idlePollMs = options.idlePollMs ?? 50;
    this.#writes = new SessionWrites({
      // One port write per batch: a write is a thread-pool round trip, the concat is cheap beside it.
      write: (buffers) => this.#port.write(buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers)),
      generation: () => this.#generation,
      onError: (err) => this.#logger.warn({ err, step: 'port write' }, 'agent port write failed'),
    });
  }

  /** Number of host sessions started so far. */
  get sessions(): number {
    return this.#sessions;
  }

  start(): void {
    this.#loop ??= this.#readLoop();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#endSession('agent stopping');
    await this.#writes.drained;
  }

  async #readLoop(): Promise<void> {
    const buffer = Buffer.allocUnsafe(64 * 1024);
    let idle = false;
    while (!this.#stopped) {
      let n: number;
      try {
        n = await this.#port.read(buffer);
      } catch (err) {
        this.#logger.warn({ err, step: 'port read' }, 'agent port read failed; retrying');
        await sleep(this.#idlePollMs * 4);
        continue;
      }
      if (n === 0) {
        if (!idle) this.#endSession('host disconnected (EOF)');
        idle = true;
        this.#hunt = Buffer.alloc(0);
        await sleep(this.#idlePollMs);
        continue;
      }
      idle = false;
      this.#onBytes(Buffer.from(buffer.subarray(0, n)));
    }
  }

  #onBytes(chunk: Buffer): void {
    const session = this.#session;
    if (session) {
      const foreign = session.scanner.scan(chunk);
      if (!foreign) {
        session.stream.push(chunk);
        return;
      }
      if (foreign.from > 0) session.stream.push(chunk.subarray(0, foreign.from));
      this.#endSession('new host session (SYNC)');
      this.#hunt = Buffer.concat([foreign.carry, chunk.subarray(foreign.from)]);
    } else {
      this.#hunt = Buffer.concat([this.#hunt, chunk]);
    }
    this.#huntForSync();
  }

  #huntForSync(): void {
    for (;;) {
      const at = this.#hunt.indexOf(SYNC_MAGIC);
      if (at < 0) {
        // Keep a tail that may be the start of a SYNC split across reads.
        this.#hunt = this.#hunt.subarray(Math.max(0, this.#hunt.length - (SYNC_MAGIC.length - 1)));
        return;
      }
      if (this.#hunt.length - at < SYNC_FRAME_BYTES) {
        this.#hunt = this.#hunt.subarray(at);
        return;
      }
      const token = Buffer.from(this.#hunt.subarray(at + SYNC_MAGIC.length, at + SYNC_FRAME_BYTES));
      const rest = Buffer.from(this.#hunt.subarray(at + SYNC_FRAME_BYTES));
      this.#hunt = Buffer.alloc(0);
      this.#beginSession(token);
      if (rest.length > 0) this.#onBytes(rest);
      return;
    }
  }

  #beginSession(token: Buffer): void {
    this.#endSession('new host session');
    const generation = ++this.#generation;
    this.#sessions++;
    // The ACK goes out before any byte of the new session: the host drops everything before it.
    void this.#writes.enqueue(generation, [ACK_MAGIC, token]);
    const stream = new Duplex({
      read() {},
      write: (chunk: Buffer, _encoding, callback) => {
        // Completing only once the port took it gives http2 real backpressure.
        void this.#writes.enqueue(generation, [chunk]).then(() => callback());
      },
      writev: (chunks, callback) => {
        void this.#writes
          .enqueue(
            generation,
            chunks.map((entry) => entry.chunk as Buffer),
          )
          .then(() => callback());
      },
      final: (callback) => callback(),
    });
    stream.on('error', () => {});
    this.#session = { stream, generation, scanner: new FrameScanner() };
    this.#logger.info({ step: 'channel', session: this.#sessions }, 'host session started');
    this.#onSession(stream);
  }

  #endSession(reason: string): void {
    const session = this.#session;
    if (!session) return;
    this.#session = undefined;
    this.#generation++;
    this.#logger.info({ step: 'channel', reason }, 'host session ended');
    session.stream.push(null);
    session.stream.destroy();
  }
}
