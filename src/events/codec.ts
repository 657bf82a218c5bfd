// The record codec: one framed, checksummed JSON value per LevelDB value. Changing the frame needs a new format byte.
import { crc32c } from '@node-rs/crc32';
import { Corruption } from '../errors/index.js';
import type { EventEnvelope } from './envelope.js';
import type { EventRegistry } from './registry.js';

/**
 * Frame layout: [format:u8 = 1][crc32c(body):u32 big-endian][body: UTF-8 JSON].
 * CRC32C (Castagnoli, hardware-accelerated by @node-rs/crc32) detects torn or flipped bytes.
 */
export const recordFormat = 1;
export const recordHeaderBytes = 5;

/** Why a frame could not be read; verify() reports these kinds. */
export type DecodeFailure = 'checksum' | 'undecodable';

/** Thrown by the decoders; `reason` says whether the bytes were damaged or merely unreadable. */
export class RecordDecodeError extends Corruption {
  constructor(
    readonly reason: DecodeFailure,
    message: string,
    cause?: unknown,
  ) {
    super('record decode', message, { reason }, cause);
  }
}

/** CRC32C of `bytes`. */
export function checksum(bytes: Uint8Array): number {
  return crc32c(bytes);
}

/** Frames any JSON-serialisable value. */
export function encodeFrame(value: unknown): Buffer {
  const json = JSON.stringify(value);
  const length = Buffer.byteLength(json, 'utf8');
  const out = Buffer.allocUnsafe(recordHeaderBytes + length);
  out[0] = recordFormat;
  out.write(json, recordHeaderBytes, length, 'utf8');
  out.writeUInt32BE(crc32c(out.subarray(recordHeaderBytes)), 1);
  return out;
}

/** Checks a frame's format and checksum, then parses it. Throws RecordDecodeError. */
export function decodeFrame(frame: Uint8Array): unknown {
  if (frame.length < recordHeaderBytes) {
    throw new RecordDecodeError('undecodable', `record of ${frame.length} bytes is shorter than its header`);
  }
  const buf = Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  if (buf[0] !== recordFormat) throw new RecordDecodeError('undecodable', `unknown record format ${buf[0]}`);
  const body = buf.subarray(recordHeaderBytes);
  const stored = buf.readUInt32BE(1);
  const actual = crc32c(body);
  if (stored !== actual) {
    throw new RecordDecodeError(
      'checksum',
      `checksum mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)})`,
    );
  }
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new RecordDecodeError('undecodable', `body is not JSON: ${(err as Error).message}`, err);
  }
}

/** Frames an event as stored: `schema` is the schema its `data` was written at. */
export function encodeEvent(event: EventEnvelope): Buffer {
  return encodeFrame(event);
}

function isStoredEvent(value: unknown): value is EventEnvelope {
  if (value === null || typeof value !== 'object') return false;
  const e = value as Record<string, unknown>;
  return (
    typeof e.seq === 'number' &&
    typeof e.stream === 'string' &&
    typeof e.version === 'number' &&
    typeof e.type === 'string' &&
    typeof e.schema === 'number' &&
    typeof e.id === 'string' &&
    typeof e.at === 'string' &&
    'data' in e
  );
}

/**
 * Decodes an event frame, checks its checksum and shape, and lifts its data to the current schema when
 * `registry` knows the type (an unknown type is returned as stored). Throws RecordDecodeError.
 */
export function decodeEvent(frame: Uint8Array, registry?: EventRegistry): EventEnvelope {
  const value = decodeFrame(frame);
  if (!isStoredEvent(value)) throw new RecordDecodeError('undecodable', 'record is not an event envelope');
  if (registry === undefined || !registry.has(value.type)) return value;
  const current = registry.currentSchema(value.type);
  if (value.schema === current) return value;
  if (value.schema > current) {
    throw new RecordDecodeError(
      'undecodable',
      `${value.type} stored at schema ${value.schema}, newer than this build's ${current}`,
    );
  }
  return { ...value, schema: current, data: registry.upcast(value.type, value.schema, value.data) };
}
