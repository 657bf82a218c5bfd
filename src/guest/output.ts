// A process's stdout or stderr as a bounded buffer with absolute offsets: with a reader attached the process is slowed
// down (its pipe paused) instead of losing bytes; with none, the oldest bytes go first and are counted as dropped.
// Until the first reader attaches (the daemon does so right after it started the process) the buffer holds its bytes
// as if one were attached at 0, for at most `holdMs` after the first byte: a fast writer loses nothing to that race.

/** Default bytes kept per stream while nobody (or a slow host) reads. */
export const DEFAULT_OUTPUT_CAPACITY = 1024 * 1024;
/** How long output waits for its first reader before the buffer drops as usual. */
export const DEFAULT_FIRST_READER_HOLD_MS = 10_000;

/** What feeds the buffer (the child's pipe): paused while attached readers lag a full buffer behind. */
export interface OutputSource {
  pause(): void;
  resume(): void;
}

/** A position in the stream; readers that lag keep their bytes from being dropped. */
export interface OutputReader {
  offset: number;
}

/**
 * Bytes of one output stream. Offsets are absolute (since the process started); `start` is the oldest byte kept and
 * equals the number of bytes dropped. Readers `attach`, pull with `readFrom` and wait with `waitForMore`.
 */
export class OutputBuffer {
  readonly #capacity: number;
  #chunks: Buffer[] = [];
  #start = 0;
  #end = 0;
  #finished = false;
  #waiters: (() => void)[] = [];
  #readers = new Set<OutputReader>();
  #source: OutputSource | undefined;
  #paused = false;
  readonly #holdMs: number;
  /** Stands for the first reader until it comes (or holdMs after the first byte). */
  #hold: OutputReader | undefined;
  #holdTimer: NodeJS.Timeout | undefined;

  constructor(capacity = DEFAULT_OUTPUT_CAPACITY, holdMs = DEFAULT_FIRST_READER_HOLD_MS) {
    this.#capacity = capacity;
    this.#holdMs = holdMs;
    if (holdMs > 0) {
      this.#hold = { offset: 0 };
      this.#readers.add(this.#hold);
    }
  }

  /** Offset of the oldest byte still held (= bytes dropped so far). */
  get start(): number {
    return this.#start;
  }
  /** Offset after the newest byte. */
  get end(): number {
    return this.#end;
  }
  get dropped(): number {
    return this.#start;
  }
  /** True once the writer closed: no bytes will follow `end`. */
  get finished(): boolean {
    return this.#finished;
  }

  setSource(source: OutputSource): void {
    this.#source = source;
  }

  append(data: Buffer): void {
    if (this.#finished || data.length === 0) return;
    if (this.#hold && !this.#holdTimer) {
      this.#holdTimer = setTimeout(() => this.#release(), this.#holdMs);
      this.#holdTimer.unref?.();
    }
    this.#chunks.push(data);
    this.#end += data.length;
    this.#enforceCapacity();
    this.#wake();
  }

  finish(): void {
    this.#finished = true;
    this.#wake();
  }

  /** Registers a reader starting at `offset`; detach it when done so it stops holding bytes. */
  attach(offset: number): OutputReader {
    const reader = { offset: Math.max(offset, this.#start) };
    this.#readers.add(reader);
    this.#release();
    return reader;
  }

  /** The first reader came (or waited for too long): drop as usual from now on. */
  #release(): void {
    if (!this.#hold) return;
    this.#readers.delete(this.#hold);
    this.#hold = undefined;
    clearTimeout(this.#holdTimer);
    this.#enforceCapacity();
  }

  detach(reader: OutputReader): void {
    this.#readers.delete(reader);
    this.#enforceCapacity();
  }

  /** Up to `max` bytes from `offset` (moved up to `start` if older); empty when nothing is there yet. */
  readFrom(offset: number, max = 64 * 1024): { offset: number; data: Buffer } {
    const { offset: from, parts } = this.partsFrom(offset, max);
    return { offset: from, data: parts.length === 1 ? parts[0]! : Buffer.concat(parts) };
  }

  /** As readFrom, as views of the held chunks (no copy): what a writev sends as is. */
  partsFrom(offset: number, max: number): { offset: number; parts: Buffer[]; length: number } {
    let at = Math.max(offset, this.#start);
    const from = at;
    const parts: Buffer[] = [];
    let wanted = Math.max(0, Math.min(max, this.#end - at));
    const length = wanted;
    let chunkStart = this.#start;
    for (const chunk of this.#chunks) {
      if (wanted === 0) break;
      const chunkEnd = chunkStart + chunk.length;
      if (chunkEnd > at) {
        const part = chunk.subarray(at - chunkStart, Math.min(chunk.length, at - chunkStart + wanted));
        parts.push(part);
        at += part.length;
        wanted -= part.length;
      }
      chunkStart = chunkEnd;
    }
    return { offset: from, parts, length };
  }

  /** Reads for an attached reader and advances it. */
  read(reader: OutputReader, max = 64 * 1024): { offset: number; data: Buffer } {
    const chunk = this.readFrom(reader.offset, max);
    this.#advance(reader, chunk.offset + chunk.data.length);
    return chunk;
  }

  /** As read, as views of the held chunks (see partsFrom). */
  readParts(reader: OutputReader, max: number): { offset: number; parts: Buffer[]; length: number } {
    const read = this.partsFrom(reader.offset, max);
    this.#advance(reader, read.offset + read.length);
    return read;
  }

  #advance(reader: OutputReader, to: number): void {
    reader.offset = to;
    if (this.#paused) this.#enforceCapacity();
  }

  /** Resolves when bytes past `offset` arrive, or the stream finishes, or `signal` aborts. */
  waitForMore(offset: number, signal?: AbortSignal): Promise<void> {
    if (this.#end > offset || this.#finished || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.#waiters.push(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** Drops what no reader still needs beyond capacity; pauses the source if readers lag more than that. */
  #enforceCapacity(): void {
    let droppable = this.#end;
    for (const reader of this.#readers) droppable = Math.min(droppable, reader.offset);
    while (this.#end - this.#start > this.#capacity && this.#start < droppable) {
      const first = this.#chunks[0]!;
      const excess = Math.min(this.#end - this.#start - this.#capacity, droppable - this.#start);
      if (first.length <= excess) {
        this.#chunks.shift();
        this.#start += first.length;
      } else {
        this.#chunks[0] = first.subarray(excess);
        this.#start += excess;
      }
    }
    const full = this.#end - this.#start > this.#capacity;
    if (full && !this.#paused && this.#source) {
      this.#paused = true;
      this.#source.pause();
    } else if (!full && this.#paused) {
      this.#paused = false;
      this.#source?.resume();
    }
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter();
  }
}
