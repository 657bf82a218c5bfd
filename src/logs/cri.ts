// The CRI log line format (kubelet's and crictl's, containerd's cri plugin writes it):
//   <RFC3339Nano time> <stdout|stderr> <F|P> <content>\n
// F ends a line of the process's output (the newline it wrote is the line's own); P is part of a longer line, or the
// bytes that had arrived when a chunk ended mid-line. The process's exact bytes come back as: P content, F content+\n.

export type OutputStream = 'stdout' | 'stderr';

/** Longest content of one record; longer lines are split into P records (kubelet's limit too). */
export const MAX_RECORD_CONTENT = 16 * 1024;

export interface LogRecord {
  /** Absolute log offset of the record's first byte (across rotations). */
  readonly offset: number;
  /** Absolute log offset after the record's newline. */
  readonly end: number;
  /** RFC3339Nano, UTC, always 9 fraction digits: compares as text. */
  readonly time: string;
  readonly stream: OutputStream;
  readonly partial: boolean;
  readonly content: Buffer;
  /** The record is sandboxd's note that output was lost, not the process's bytes. */
  readonly marker?: boolean;
}

/** The process's bytes a record stands for. */
export function recordBytes(record: Pick<LogRecord, 'partial' | 'content'>): Buffer {
  return record.partial ? record.content : Buffer.concat([record.content, NEWLINE]);
}

const NEWLINE = Buffer.from('\n');

/**
 * Nanosecond wall-clock times that never go backwards within a log: the host clock in ms plus the sub-ms part of the
 * monotonic clock, then at least 1 ns after the previous one.
 */
export class LogClock {
  #last = 0n;

  constructor(after?: string) {
    if (after) this.#last = parseTimeNs(after) ?? 0n;
  }

  now(): string {
    const wall = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
    this.#last = wall > this.#last ? wall : this.#last + 1n;
    return formatTimeNs(this.#last);
  }
}

export function formatTimeNs(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const iso = new Date(ms).toISOString(); // 2026-01-02T03:04:05.678Z
  const fraction = (ns % 1_000_000_000n).toString().padStart(9, '0');
  return `${iso.slice(0, 19)}.${fraction}Z`;
}

/** Nanoseconds since the epoch of an RFC3339 time (any fraction length, Z or ±hh:mm); undefined if malformed. */
export function parseTimeNs(text: string): bigint | undefined {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (!m) return undefined;
  const seconds = Date.parse(`${m[1]}${m[3] === 'Z' ? 'Z' : m[3]}`);
  if (Number.isNaN(seconds)) return undefined;
  const fraction = BigInt((m[2] ?? '').padEnd(9, '0') || '0');
  return BigInt(seconds) * 1_000_000n + fraction;
}

/**
 * The records for `data` of one stream, in one buffer: split at newlines (F) and at MAX_RECORD_CONTENT (P); a tail
 * without newline is a P record. Content is raw bytes; only '\n' is special.
 */
export function encodeRecords(time: string, stream: OutputStream, data: Buffer): Buffer {
  const parts: Buffer[] = [];
  const head = (tag: 'F' | 'P') => Buffer.from(`${time} ${stream} ${tag} `, 'latin1');
  let at = 0;
  while (at < data.length) {
    const nl = data.indexOf(0x0a, at);
    const lineEnd = nl < 0 ? data.length : nl;
    if (lineEnd - at > MAX_RECORD_CONTENT) {
      parts.push(head('P'), data.subarray(at, at + MAX_RECORD_CONTENT), NEWLINE);
      at += MAX_RECORD_CONTENT;
      continue;
    }
    parts.push(head(nl < 0 ? 'P' : 'F'), data.subarray(at, lineEnd), NEWLINE);
    at = nl < 0 ? data.length : nl + 1;
  }
  return Buffer.concat(parts);
}

/** One marker record (F) saying what was lost; its content is not the process's. */
export function markerContent(stream: OutputStream, bytes: number): Buffer {
  return Buffer.from(
    `[sandboxd: ${bytes} bytes of ${stream} lost: the guest's buffer overflowed while the daemon was not reading]`,
  );
}

/**
 * Parses the complete lines of `buf` (which starts at absolute `offset`); `used` is how many bytes they span (a torn
 * last line without its newline is left). Malformed lines are skipped, counted in `malformed`.
 */
export function decodeRecords(
  buf: Buffer,
  offset: number,
): { records: LogRecord[]; used: number; malformed: number } {
  const records: LogRecord[] = [];
  let malformed = 0;
  let at = 0;
  for (;;) {
    const nl = buf.indexOf(0x0a, at);
    if (nl < 0) break;
    const record = decodeLine(buf.subarray(at, nl), offset + at, offset + nl + 1);
    if (record) records.push(record);
    else malformed++;
    at = nl + 1;
  }
  return { records, used: at, malformed };
}

function decodeLine(line: Buffer, offset: number, end: number): LogRecord | undefined {
  const s1 = line.indexOf(0x20);
  if (s1 < 0) return undefined;
  const s2 = line.indexOf(0x20, s1 + 1);
  if (s2 < 0) return undefined;
  const time = line.toString('latin1', 0, s1);
  const stream = line.toString('latin1', s1 + 1, s2);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const tag = line[s2 + 1];
  if ((tag !== 0x46 && tag !== 0x50) || (line.length > s2 + 2 && line[s2 + 2] !== 0x20)) return undefined;
  const content = line.subarray(Math.min(line.length, s2 + 3));
  return { offset, end, time, stream, partial: tag === 0x50, content };
}
