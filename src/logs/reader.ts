// Reading a process's host log: records from an absolute offset, since a time, the last N lines; what rotation
// already removed is reported, never silently skipped.
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeRecords, type LogRecord, type OutputStream, parseTimeNs } from './cri.js';
import { fileName, readEnd, readMetas } from './writer.js';

export interface ReadOptions {
  /** Absolute log offset to start at (a line boundary, e.g. a previous read's `next`); default: the oldest kept. */
  readonly from?: number;
  /** Only records at or after this RFC3339 time. */
  readonly since?: string;
  /** Only the last N lines (a line: its P records and the F that ends it). */
  readonly tail?: number;
  readonly streams?: readonly OutputStream[];
  /** Stop after about this many bytes of log (the next read goes on at `next`). Default 64 MiB. */
  readonly maxBytes?: number;
}

export interface ReadResult {
  readonly records: LogRecord[];
  /** Offset to read on from (after the last complete line read). */
  readonly next: number;
  /** Offset of the oldest byte still kept (rotation removed what came before). */
  readonly first: number;
  /** Bytes asked for (from `from`) that rotation had already removed. */
  readonly skipped: number;
  /** The log is finished and `next` is its end: nothing will follow. */
  readonly done: boolean;
}

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

/** Reads `dir`'s log (an absent log reads as empty and not done). */
export async function readLog(dir: string, options: ReadOptions = {}): Promise<ReadResult> {
  const metas = await readMetas(dir);
  const end = await readEnd(dir);
  const first = metas[0]?.start ?? 0;
  const from = Math.max(options.from ?? 0, first);
  const skipped = Math.max(0, first - (options.from ?? first));
  const records: LogRecord[] = [];
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  let next = from;
  let read = 0;
  for (let i = 0; i < metas.length && read < maxBytes; i++) {
    const meta = metas[i]!;
    const following = metas[i + 1];
    if (following && following.start <= next) continue;
    const buf = await readFrom(
      join(dir, fileName(meta.seq)),
      Math.max(0, next - meta.start),
      maxBytes - read,
    );
    if (buf === undefined) continue; // pruned after the listing: the next file goes on
    const at = meta.start + Math.max(0, next - meta.start);
    const decoded = decodeRecords(buf, at);
    for (const r of decoded.records) {
      records.push(meta.marker && r.offset === meta.start ? { ...r, marker: true } : r);
    }
    read += decoded.used;
    next = at + decoded.used;
    // A torn or still-growing tail: later files cannot be read past it.
    if (decoded.used < buf.length) break;
    if (following) next = Math.max(next, following.start);
  }
  const done = end !== undefined && next >= end.end;
  return { records: select(records, options), next, first, skipped, done };
}

async function readFrom(path: string, position: number, max: number): Promise<Buffer | undefined> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const { size } = await fh.stat();
    const length = Math.max(0, Math.min(size - position, max));
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, position + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

/** Applies the stream, since and tail filters. */
export function select(
  records: LogRecord[],
  options: Pick<ReadOptions, 'since' | 'tail' | 'streams'>,
): LogRecord[] {
  let out = records;
  if (options.streams && options.streams.length < 2) {
    const wanted = new Set(options.streams);
    out = out.filter((r) => wanted.has(r.stream));
  }
  if (options.since !== undefined) {
    const ms = Date.parse(options.since);
    const since = parseTimeNs(options.since) ?? (Number.isNaN(ms) ? undefined : BigInt(ms) * 1_000_000n);
    if (since !== undefined) out = out.filter((r) => (parseTimeNs(r.time) ?? 0n) >= since);
  }
  if (options.tail !== undefined) out = lastLines(out, options.tail);
  return out;
}

/** The records of the last `n` lines: counted at each F record, plus a stream's unfinished last line. */
function lastLines(records: LogRecord[], n: number): LogRecord[] {
  if (n <= 0) return [];
  let lines = 0;
  const seen = new Set<OutputStream>();
  for (let i = records.length - 1; i >= 0; i--) {
    const r = records[i]!;
    const counts = !r.partial || !seen.has(r.stream);
    seen.add(r.stream);
    if (!counts) continue;
    lines++;
    // Record i ends the line before the last n: every record after it belongs to a kept line.
    if (lines > n) return records.slice(i + 1);
  }
  return records;
}
