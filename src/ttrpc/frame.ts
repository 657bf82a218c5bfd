// ttrpc framing: a 10-byte big-endian header (u32 length, u32 stream id, u8 type, u8 flags), then the data.

export const HEADER_LENGTH = 10;
/** The largest data a frame may carry (ttrpc's messageLengthMax). */
export const MAX_MESSAGE_LENGTH = 4 << 20;

export const MessageType = { Request: 1, Response: 2, Data: 3 } as const;
export const Flags = { RemoteClosed: 0x1, RemoteOpen: 0x2, NoData: 0x4 } as const;

export interface Frame {
  readonly streamId: number;
  readonly type: number;
  readonly flags: number;
  readonly data: Buffer;
}

/** A frame whose declared length is over the limit: its data was skipped, the stream can be answered. */
export interface OversizedFrame {
  readonly streamId: number;
  readonly type: number;
  readonly length: number;
}

export function encodeFrame(streamId: number, type: number, flags: number, data: Uint8Array): Buffer {
  if (data.length > MAX_MESSAGE_LENGTH) throw new RangeError(oversizeMessage(data.length));
  const out = Buffer.allocUnsafe(HEADER_LENGTH + data.length);
  out.writeUInt32BE(data.length, 0);
  out.writeUInt32BE(streamId >>> 0, 4);
  out.writeUInt8(type, 8);
  out.writeUInt8(flags, 9);
  out.set(data, HEADER_LENGTH);
  return out;
}

export function oversizeMessage(length: number): string {
  return `message length ${length} exceed maximum message size of ${MAX_MESSAGE_LENGTH}`;
}

/**
 * Cuts a byte stream into frames, whatever the chunking (split headers, several frames per chunk).
 * An oversized frame is reported and its data discarded as it streams past, as ttrpc's channel does,
 * so one bad message costs its stream, not the connection.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private skipping = 0;

  constructor(
    private readonly onFrame: (frame: Frame) => void,
    private readonly onOversized: (frame: OversizedFrame) => void,
  ) {}

  push(chunk: Buffer): void {
    if (this.skipping > 0) {
      const skip = Math.min(this.skipping, chunk.length);
      this.skipping -= skip;
      chunk = chunk.subarray(skip);
      if (chunk.length === 0) return;
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.drain();
  }

  private drain(): void {
    while (this.buffered >= HEADER_LENGTH) {
      const head = this.peek(HEADER_LENGTH);
      const length = head.readUInt32BE(0);
      const streamId = head.readUInt32BE(4);
      const type = head.readUInt8(8);
      const flags = head.readUInt8(9);
      if (length > MAX_MESSAGE_LENGTH) {
        this.take(HEADER_LENGTH);
        const have = Math.min(this.buffered, length);
        this.take(have);
        this.skipping = length - have;
        this.onOversized({ streamId, type, length });
        if (this.skipping > 0) return;
        continue;
      }
      if (this.buffered < HEADER_LENGTH + length) return;
      this.take(HEADER_LENGTH);
      const data = this.take(length);
      this.onFrame({ streamId, type, flags, data });
    }
  }

  private peek(n: number): Buffer {
    if (this.chunks[0] && this.chunks[0].length >= n) return this.chunks[0].subarray(0, n);
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all.subarray(0, n);
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    let out: Buffer;
    if (first && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }
}
