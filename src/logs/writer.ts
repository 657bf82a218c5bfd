// One process's host log: CRI lines in numbered files (<seq>.log) under a directory, each with a small sidecar
// (<seq>.json) saying where it starts (absolute log offset, and how many bytes of stdout / stderr came before it).
// The sidecar is written (fsynced, renamed) before its file gets a byte, so after any crash the newest sidecar plus a
// scan of its file say exactly how many bytes of each stream the log holds: the daemon resumes the guest's streams
// there, with no gap and no duplicate. Lines are written whole, one write per chunk, never fsynced (as docker's
// json-file and containerd's CRI logger): a daemon crash loses nothing (the page cache has it), a host crash can lose
// the last seconds the kernel had not flushed, and a torn last line is cut on the next open.
import { EventEmitter, once } from 'node:events';
import { type FileHandle, mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeRecords, encodeRecords, LogClock, markerContent, type OutputStream } from './cri.js';

/** How big a log may grow: files of at most maxFileBytes, at most maxFiles of them (the one being written included). */
export interface LogLimits {
  readonly maxFileBytes: number;
  readonly maxFiles: number;
}

/** containerd's CRI defaults (kubelet containerLogMaxSize 10Mi, containerLogMaxFiles 5). */
export const DEFAULT_LOG_LIMITS: LogLimits = { maxFileBytes: 10 * 1024 * 1024, maxFiles: 5 };
/** A file must hold the longest record (16 KiB of content + its header) with room to spare. */
export const MIN_LOG_FILE_BYTES = 64 * 1024;

/** The sidecar of one log file. Changing this shape needs care: logs of older daemons must stay readable. */
export interface FileMeta {
  readonly seq: number;
  /** Absolute log offset of the file's first byte. */
  readonly start: number;
  /** Bytes of each stream before the file (lost ones included). */
  readonly stdout: number;
  readonly stderr: number;
  /** The file opens with a marker line saying `bytes` of `stream` were lost (the line is kept here to rewrite it). */
  readonly marker?: { readonly stream: OutputStream; readonly bytes: number; readonly line: string };
}

/** Written once both streams ended: nothing will follow. */
export interface EndMeta {
  readonly stdout: number;
  readonly stderr: number;
  readonly end: number;
}

const META = /^(\d+)\.json$/;
export const metaName = (seq: number) => `${seq}.json`;
export const fileName = (seq: number) => `${seq}.log`;
export const END_NAME = 'end.json';

async function writeJsonDurably(dir: string, name: string, value: unknown): Promise<void> {
  const tmp = join(dir, `.${name}.tmp`);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(value)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, name));
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** Sidecars of `dir`, oldest first (missing dir: none). */
export async function readMetas(dir: string): Promise<FileMeta[]> {
  const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  const seqs = names
    .map((n) => META.exec(n)?.[1])
    .filter((s): s is string => s !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
  const metas: FileMeta[] = [];
  for (const seq of seqs) {
    const text = await readFile(join(dir, metaName(seq)), 'utf8').catch(() => undefined);
    if (text === undefined) continue; // pruned meanwhile
    metas.push(JSON.parse(text) as FileMeta);
  }
  return metas;
}

export async function readEnd(dir: string): Promise<EndMeta | undefined> {
  const text = await readFile(join(dir, END_NAME), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as EndMeta);
}

const markerLine = (time: string, stream: OutputStream, bytes: number) =>
  `${time} ${stream} F ${markerContent(stream, bytes).toString()}\n`;

/**
 * Appends one process's output to its log. Operations run one at a time in call order; `append` resolves once the
 * bytes are in the file (page cache). Emits 'append' (end offset) after each write and 'end' once finished.
 */
export class ProcessLogWriter extends EventEmitter {
  readonly dir: string;
  readonly #limits: LogLimits;
  #fh: FileHandle;
  #meta: FileMeta;
  #size: number;
  #end: number;
  #offsets: Record<OutputStream, number>;
  #done: boolean;
  #clock: LogClock;
  #queue: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(
    dir: string,
    limits: LogLimits,
    fh: FileHandle,
    meta: FileMeta,
    size: number,
    offsets: Record<OutputStream, number>,
    done: boolean,
    lastTime: string | undefined,
  ) {
    super();
    this.dir = dir;
    this.#limits = limits;
    this.#fh = fh;
    this.#meta = meta;
    this.#size = size;
    this.#end = meta.start + size;
    this.#offsets = offsets;
    this.#done = done;
    this.#clock = new LogClock(lastTime);
  }

  /** Opens (creating, or recovering after a crash: a torn last line is cut) the log in `dir`. */
  static async open(dir: string, limits: LogLimits = DEFAULT_LOG_LIMITS): Promise<ProcessLogWriter> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const metas = await readMetas(dir);
    let meta = metas.at(-1);
    if (!meta) {
      meta = { seq: 1, start: 0, stdout: 0, stderr: 0 };
      await writeJsonDurably(dir, metaName(1), meta);
    }
    const path = join(dir, fileName(meta.seq));
    const fh = await open(path, 'a+', 0o600);
    try {
      let buf = await fh.readFile();
      let skip = 0;
      if (meta.marker) {
        const line = Buffer.from(meta.marker.line);
        if (buf.length < line.length || !buf.subarray(0, line.length).equals(line)) {
          // Crashed between the sidecar and its marker: the file holds nothing else yet.
          await fh.truncate(0);
          await fh.write(line);
          buf = line;
        }
        skip = line.length;
      }
      const { records, used } = decodeRecords(buf.subarray(skip), meta.start + skip);
      if (skip + used < buf.length) await fh.truncate(skip + used);
      const offsets = { stdout: meta.stdout, stderr: meta.stderr };
      for (const r of records) offsets[r.stream] += r.content.length + (r.partial ? 0 : 1);
      const done = (await readEnd(dir)) !== undefined;
      const lastTime = records.at(-1)?.time ?? meta.marker?.line.split(' ')[0];
      return new ProcessLogWriter(dir, limits, fh, meta, skip + used, offsets, done, lastTime);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** Bytes of each stream the log accounts for (written or recorded as lost): where the guest's streams resume. */
  offset(stream: OutputStream): number {
    return this.#offsets[stream];
  }
  /** Absolute log offset after the last complete line. */
  get end(): number {
    return this.#end;
  }
  /** Both streams ended and everything is in the log. */
  get done(): boolean {
    return this.#done;
  }

  /** Appends `data` of `stream` (the process's bytes that follow `offset(stream)`). */
  append(stream: OutputStream, data: Uint8Array): Promise<void> {
    if (data.length === 0) return Promise.resolve();
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    return this.#run(() => this.#append(stream, bytes));
  }

  /**
   * Records that the guest dropped `bytes` of `stream` after `offset(stream)`: a new file opening with a marker. With
   * `after`, the marker (and every append queued behind it) waits for it: the loss's event is durable before the log
   * moves past the gap, so a crash in between finds the gap again rather than losing its record.
   */
  markLost(stream: OutputStream, bytes: number, after?: Promise<unknown>): Promise<void> {
    if (bytes <= 0) return Promise.resolve();
    return this.#run(async () => {
      await after?.catch(() => undefined);
      const line = markerLine(this.#clock.now(), stream, bytes);
      const offsets = { ...this.#offsets, [stream]: this.#offsets[stream] + bytes };
      await this.#rotate(offsets, { stream, bytes, line });
      await this.#write(Buffer.from(line));
      this.#offsets = offsets;
    });
  }

  /** Both streams ended: says so durably (readers and a restarted daemon stop waiting). */
  finish(): Promise<void> {
    return this.#run(async () => {
      if (this.#done) return;
      const end: EndMeta = { ...this.#offsets, end: this.#end };
      await writeJsonDurably(this.dir, END_NAME, end);
      this.#done = true;
      this.emit('end');
    });
  }

  /** Resolves when the log grows past `offset` or finishes, or `signal` aborts. */
  async waitForMore(offset: number, signal?: AbortSignal): Promise<void> {
    if (this.#end > offset || this.#done || this.#closed || signal?.aborted) return;
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.race([
        once(this, 'append', { signal: ac.signal }),
        once(this, 'end', { signal: ac.signal }),
        once(this, 'close', { signal: ac.signal }),
      ]);
    } catch {
      // aborted
    } finally {
      ac.abort();
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async close(): Promise<void> {
    await this.#run(async () => {
      if (this.#closed) return;
      this.#closed = true;
      await this.#fh.close();
      this.emit('close');
    });
  }

  #run(op: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(() => {
      if (this.#closed) throw new Error(`log ${this.dir} is closed`);
      return op();
    });
    // A failed op fails its caller; the queue goes on for the next one.
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #append(stream: OutputStream, data: Buffer): Promise<void> {
    const buf = encodeRecords(this.#clock.now(), stream, data);
    // Whole lines per file: cut at the last newline that fits, rotate, go on. Each line's bytes are known from the
    // data it came from, so the sidecar of a new file names the exact stream offset at its start.
    let at = 0;
    let dataAt = 0;
    while (at < buf.length) {
      const room = this.#limits.maxFileBytes - this.#size;
      let take = buf.length - at;
      if (take > room) {
        const cut = room > 0 ? buf.lastIndexOf(0x0a, at + room - 1) : -1;
        if (cut >= at) take = cut + 1 - at;
        else if (this.#size > 0) {
          await this.#rotate(this.#offsets);
          continue;
        } else take = buf.indexOf(0x0a, at) + 1 - at; // one record longer than a file: alone in its file
      }
      const part = buf.subarray(at, at + take);
      const bytes = dataBytes(part);
      await this.#write(part);
      at += take;
      dataAt += bytes;
      this.#offsets = { ...this.#offsets, [stream]: this.#offsets[stream] + bytes };
    }
    if (dataAt !== data.length) throw new Error(`log ${this.dir}: wrote ${dataAt} of ${data.length} bytes`);
  }

  async #write(part: Buffer): Promise<void> {
    let written = 0;
    while (written < part.length) {
      const { bytesWritten } = await this.#fh.write(part, written, part.length - written);
      written += bytesWritten;
    }
    this.#size += part.length;
    this.#end += part.length;
    this.emit('append', this.#end);
  }

  /** Starts file seq+1 (its sidecar first), then drops files beyond maxFiles. */
  async #rotate(offsets: Record<OutputStream, number>, marker?: FileMeta['marker']): Promise<void> {
    const meta: FileMeta = {
      seq: this.#meta.seq + 1,
      start: this.#end,
      stdout: offsets.stdout,
      stderr: offsets.stderr,
      ...(marker ? { marker } : {}),
    };
    await writeJsonDurably(this.dir, metaName(meta.seq), meta);
    const fh = await open(join(this.dir, fileName(meta.seq)), 'a+', 0o600);
    await this.#fh.close();
    this.#fh = fh;
    this.#meta = meta;
    this.#size = 0;
    for (let seq = meta.seq - this.#limits.maxFiles; seq >= 1; seq--) {
      const gone = await unlink(join(this.dir, metaName(seq))).then(
        () => false,
        () => true,
      );
      await unlink(join(this.dir, fileName(seq))).catch(() => undefined);
      if (gone) break; // older ones went in an earlier rotation
    }
  }
}

/** The process's bytes in whole encoded lines (content, plus the newline of F lines). */
function dataBytes(lines: Buffer): number {
  let n = 0;
  let at = 0;
  while (at < lines.length) {
    const nl = lines.indexOf(0x0a, at);
    const s1 = lines.indexOf(0x20, at);
    const s2 = lines.indexOf(0x20, s1 + 1);
    const partial = lines[s2 + 1] === 0x50;
    n += nl - (s2 + 3) + (partial ? 0 : 1);
    at = nl + 1;
  }
  return n;
}
