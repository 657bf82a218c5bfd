// The durable EventStore on LevelDB: atomic batches, group commit with one fsync per flush, checksummed records.
import { cp } from 'node:fs/promises';
import { Level } from 'level';
import type { Logger } from 'pino';
import { type Observable, Subject } from 'rxjs';
import {
  ConcurrencyConflict,
  Corruption,
  Internal,
  InvalidArgument,
  InvalidState,
  type SandboxdError,
} from '../errors/index.js';
import {
  decodeEvent,
  type EventEnvelope,
  type EventRegistry,
  encodeEvent,
  type NewEvent,
  RecordDecodeError,
} from '../events/index.js';
import { defaultLogger, defaultRegistry } from './defaults.js';
import { flatten } from './flatten.js';
import { eventKey, eventKeyRange, prefix, seqOfEventKey, streamIndexKey, streamIndexRange } from './keys.js';
import {
  type Db,
  type LevelOpenOptions,
  levelRead,
  openLevelLog,
  readBatchRecords,
  readHighWaterMarkBytes,
} from './level-open.js';
import { catchUpThenLive } from './live.js';
import { checkExpectedVersion, checkStream, prepareEvents, toEnvelope } from './prepare.js';
import { readAllSnapshots, readSnapshot, writeSnapshot } from './snapshots.js';
import type {
  AppendResult,
  EventStore,
  ExpectedVersion,
  StoredSnapshot,
  StoreStats,
  StreamInfo,
  VerifyReport,
} from './types.js';
import { verifyLog } from './verify.js';

export interface LevelEventStoreOptions extends LevelOpenOptions {
  /** Validates appends and upcasts reads; default: the catalogue's `eventRegistry`. */
  readonly registry?: EventRegistry;
  readonly logger?: Logger;
  /** Live events held per subscriber while it catches up (default 10,000). */
  readonly liveBufferLimit?: number;
}

type PutOp = { type: 'put'; key: Buffer; value: Buffer };

interface PendingAppend {
  readonly stream: string;
  readonly ops: PutOp[];
  readonly bytes: number;
  readonly result: AppendResult;
  readonly resolve: (result: AppendResult) => void;
  readonly reject: (err: unknown) => void;
}

/** A flush stops taking appends past this many bytes; the rest go in the next one. */
const maxFlushBytes = 8 << 20;
/** Groups at least this large make the next burst split in two (smaller ones gain nothing from it). */
const minSplitGroup = 16;

/**
 * The LevelDB event log. Appends are checked against in-memory heads (including appends still queued)
 * as they arrive, queued, and written by the group committer: one synced batch per flush.
 */
export class LevelEventStore implements EventStore {
  /** Versions as durable on disk: what reads, listStreams and streamVersion report. */
  private readonly heads = new Map<string, number>();
  /** Versions including queued appends: what expected versions are checked against. */
  private readonly pendingHeads = new Map<string, number>();
  private durableSeq: number;
  private nextSeq: number;
  private queue: PendingAppend[] = [];
  /** The synced batch in flight, if any: one at a time, so batches reach the disk in seq order. */
  private flushing: Promise<void> | undefined;
  private flushScheduled = false;
  /** A queue this long is flushed without waiting for the turn of the event loop to end (see flushed()). */
  private splitAt = Number.POSITIVE_INFINITY;
  /** How long the last synced batch took, in ms (the batch grows while the next one is in flight). */
  lastFlushMs = 0;
  /** Counters for benchmarks and `sandboxctl info`. */
  readonly stats: { -readonly [K in keyof StoreStats]: StoreStats[K] } = {
    flushes: 0,
    appends: 0,
    events: 0,
    flushMs: 0,
  };
  private failure: SandboxdError | undefined;
  private closed = false;
  private readonly live = new Subject<EventEnvelope>();

  private constructor(
    readonly dir: string,
    private readonly db: Db,
    private readonly registry: EventRegistry,
    private readonly logger: Logger,
    private readonly liveBufferLimit: number | undefined,
    lastSeq: number,
    heads: Map<string, number>,
  ) {
    this.durableSeq = lastSeq;
    this.nextSeq = lastSeq + 1;
    for (const [stream, version] of heads) {
      this.heads.set(stream, version);
      this.pendingHeads.set(stream, version);
    }
  }

  /** Opens (creating if needed) the log in `dir`. Throws StateDirInUse, Corruption or Internal. */
  static async open(dir: string, options: LevelEventStoreOptions = {}): Promise<LevelEventStore> {
    const logger = (options.logger ?? defaultLogger()).child({ component: 'store', dir });
    const { db, lastSeq, heads } = await openLevelLog(dir, options, logger);
    return new LevelEventStore(
      dir,
      db,
      options.registry ?? defaultRegistry(),
      logger,
      options.liveBufferLimit,
      lastSeq,
      heads,
    );
  }

  private usable(command: string): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw new InvalidState('event store', this.dir, 'closed', command);
  }

  append(
    stream: string,
    expectedVersion: ExpectedVersion,
    events: readonly NewEvent[],
  ): Promise<AppendResult> {
    try {
      this.usable('append');
      checkStream(stream);
      checkExpectedVersion(expectedVersion);
      const prepared = prepareEvents(this.registry, events);
      const actual = this.pendingHeads.get(stream) ?? 0;
      if (expectedVersion !== 'any' && expectedVersion !== actual) {
        throw new ConcurrencyConflict(stream, expectedVersion, actual);
      }
      const firstSeq = this.nextSeq;
      const envelopes: EventEnvelope[] = new Array(prepared.length);
      const ops: PutOp[] = [];
      let bytes = 0;
      for (let i = 0; i < prepared.length; i++) {
        const event = prepared[i]!;
        const envelope = toEnvelope(firstSeq + i, stream, actual + 1 + i, event);
        envelopes[i] = envelope;
        const value = encodeEvent(envelope, event.dataJson);
        const seqKey = eventKey(envelope.seq);
        ops.push(
          { type: 'put', key: seqKey, value },
          { type: 'put', key: streamIndexKey(stream, envelope.version), value: seqKey.subarray(1) },
        );
        bytes += value.length + 64;
      }
      // Past this point the append is queued: seq and version are taken.
      this.nextSeq += prepared.length;
      const version = actual + prepared.length;
      this.pendingHeads.set(stream, version);
      const result: AppendResult = {
        version,
        firstSeq,
        lastSeq: firstSeq + prepared.length - 1,
        events: envelopes,
      };
      return new Promise<AppendResult>((resolve, reject) => {
        this.queue.push({ stream, ops, bytes, result, resolve, reject });
        this.scheduleFlush();
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Flush at once when idle. While a flush is in flight, appends accumulate: the next batch grows for as
   * long as the last fsync took, and goes out as soon as that flush returns.
   */
  private scheduleFlush(): void {
    if (this.flushing) return;
    if (this.queue.length >= this.splitAt) {
      this.startFlush();
      return;
    }
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate, not a microtask: appends issued in the same turn of the event loop join this flush.
    setImmediate(() => {
      this.flushScheduled = false;
      if (!this.flushing) this.startFlush();
    });
  }

  /**
   * Writes the queue's head as one synced batch. When it is durable, the next batch (what queued meanwhile)
   * goes out before this one's appenders are answered, so their next appends are prepared on this thread
   * while the disk syncs that batch: appenders settle into two cohorts whose CPU and fsync overlap.
   */
  private startFlush(): void {
    if (this.failure || this.queue.length === 0) return;
    let take = 0;
    let bytes = 0;
    while (take < this.queue.length && (take === 0 || bytes + this.queue[take]!.bytes <= maxFlushBytes)) {
      bytes += this.queue[take]!.bytes;
      take++;
    }
    const group = take === this.queue.length ? this.queue : this.queue.slice(0, take);
    this.queue = take === this.queue.length ? [] : this.queue.slice(take);

    let written: Promise<void>;
    let started = 0;
    try {
      // A chained batch: abstract-level's array form costs ~4x more CPU per operation.
      const batch = this.db.batch();
      for (const pending of group) {
        for (const op of pending.ops) batch.put(op.key, op.value);
      }
      started = performance.now();
      written = batch.write({ sync: true });
    } catch (err) {
      written = Promise.reject(err);
    }
    this.flushing = written.then(
      () => this.flushed(group, performance.now() - started),
      (err: unknown) => {
        this.flushing = undefined;
        this.fail(err, group);
      },
    );
  }

  private flushed(group: readonly PendingAppend[], flushMs: number): void {
    this.lastFlushMs = flushMs;
    this.stats.flushes++;
    this.stats.flushMs += flushMs;
    this.stats.appends += group.length;
    for (const pending of group) this.heads.set(pending.stream, pending.result.version);
    this.durableSeq = group[group.length - 1]!.result.lastSeq;

    this.flushing = undefined;
    if (this.queue.length > 0) {
      this.startFlush();
    } else if (group.length >= minSplitGroup) {
      // Everyone waited on this batch: the next burst of appends is split in two so that the halves overlap.
      this.splitAt = Math.ceil(group.length / 2);
    }

    // Persist before publish: subscribers see these events only now that they are durable.
    try {
      for (const pending of group) {
        this.stats.events += pending.result.events.length;
        for (const event of pending.result.events) this.live.next(event);
      }
    } catch (err) {
      // A subscriber's fault must not leave durable appends unacknowledged.
      this.logger.error({ err, step: 'publish' }, 'a subscriber threw while receiving events');
    }
    for (const pending of group) pending.resolve(pending.result);
  }

  /** A failed write is never retried (LevelDB's errors are sticky): the store is unusable from now on. */
  private fail(err: unknown, group: readonly PendingAppend[]): void {
    this.failure = new Internal(
      'event log write (fsync)',
      `${(err as Error).message ?? String(err)}; the event log is unusable until sandboxd restarts and replays it`,
      { dir: this.dir },
      err,
    );
    this.logger.error(
      { err, step: 'event log write (fsync)', appends: group.length },
      'event log write failed',
    );
    const queued = this.queue;
    this.queue = [];
    for (const pending of group) pending.reject(this.failure);
    for (const pending of queued) pending.reject(this.failure);
    this.live.error(this.failure);
  }

  async *readStream(stream: string, fromVersion = 1): AsyncIterable<EventEnvelope> {
    this.usable('readStream');
    checkStream(stream);
    const iterator = this.db.iterator({
      ...streamIndexRange(stream, Math.max(1, fromVersion)),
      keys: false,
      highWaterMarkBytes: readHighWaterMarkBytes,
    });
    try {
      for (;;) {
        const entries = await levelRead('read stream', () => iterator.nextv(readBatchRecords));
        if (entries.length === 0) return;
        const keys = entries.map(([, seq]) => {
          const key = Buffer.allocUnsafe(9);
          key[0] = prefix.event;
          seq.copy(key, 1, 0, 8);
          return key;
        });
        const values = await levelRead('read stream', () => this.db.getMany(keys));
        for (let i = 0; i < values.length; i++) {
          const value = values[i];
          const seq = seqOfEventKey(keys[i]!);
          if (value === undefined) {
            throw new Corruption('read stream', `index of ${stream} names seq ${seq}, which is missing`, {
              stream,
              seq,
            });
          }
          yield this.decode(value, seq);
        }
      }
    } finally {
      await iterator.close();
    }
  }

  readAll(fromSeq = 1): AsyncIterable<EventEnvelope> {
    return flatten(this.readAllBatches(fromSeq));
  }

  /**
   * Batches of decoded events with seq ≥ fromSeq, as read by one nextv() each: the fast path for replay
   * (no per-event await). Same checks as readAll.
   */
  async *readAllBatches(fromSeq = 1, batchRecords = readBatchRecords): AsyncIterable<EventEnvelope[]> {
    this.usable('readAll');
    const iterator = this.db.iterator({
      gte: eventKey(Math.max(1, Math.floor(fromSeq))),
      lt: eventKeyRange.lt,
      highWaterMarkBytes: readHighWaterMarkBytes,
    });
    const read = () => levelRead('read event log', () => iterator.nextv(batchRecords));
    // The next batch is read (on LevelDB's thread) while this one is decoded (here): replay overlaps both.
    let pending: Promise<Array<[Buffer, Buffer]>> | undefined = read();
    try {
      while (pending) {
        const entries = await pending;
        pending = undefined;
        if (entries.length === 0) return;
        pending = read();
        const out: EventEnvelope[] = new Array(entries.length);
        for (let i = 0; i < entries.length; i++) {
          const [key, value] = entries[i]!;
          out[i] = this.decode(value, key);
        }
        yield out;
      }
    } finally {
      // A read still in flight must settle before the iterator closes (abstract-level refuses otherwise).
      await pending?.catch(() => undefined);
      await iterator.close();
    }
  }

  /** `at` is the event key or its seq; a key is only parsed on failure (replay's hot path). */
  private decode(value: Buffer, at: Buffer | number): EventEnvelope {
    try {
      return decodeEvent(value, this.registry);
    } catch (err) {
      const seq = typeof at === 'number' ? at : seqOfEventKey(at);
      const problem = err instanceof RecordDecodeError ? err.problem : (err as Error).message;
      throw new Corruption('read event', `seq ${seq}: ${problem}`, { seq }, err);
    }
  }

  subscribe(fromSeq = 1): Observable<EventEnvelope> {
    this.usable('subscribe');
    return catchUpThenLive(fromSeq, (from) => this.readAll(from), this.live, this.liveBufferLimit);
  }

  async streamVersion(stream: string): Promise<number> {
    this.usable('streamVersion');
    checkStream(stream);
    return this.heads.get(stream) ?? 0;
  }

  async listStreams(streamPrefix = ''): Promise<StreamInfo[]> {
    this.usable('listStreams');
    const out: StreamInfo[] = [];
    for (const [stream, version] of this.heads) {
      if (stream.startsWith(streamPrefix)) out.push({ stream, version });
    }
    // Byte order of UTF-8 equals code point order; for the ASCII names used here, plain < is the same.
    return out.sort((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0));
  }

  lastSeq(): number {
    return this.durableSeq;
  }

  async saveSnapshot<S>(snapshot: StoredSnapshot<S>): Promise<void> {
    this.usable('saveSnapshot');
    checkStream(snapshot.stream);
    const current = this.heads.get(snapshot.stream) ?? 0;
    if (!Number.isSafeInteger(snapshot.version) || snapshot.version < 1 || snapshot.version > current) {
      throw new InvalidArgument('version', `must be within 1..${current} for stream ${snapshot.stream}`);
    }
    await writeSnapshot(this.db, snapshot);
  }

  async loadSnapshot<S>(stream: string): Promise<StoredSnapshot<S> | undefined> {
    this.usable('loadSnapshot');
    checkStream(stream);
    return readSnapshot<S>(this.db, stream, this.logger);
  }

  async loadSnapshots<S>(): Promise<Map<string, StoredSnapshot<S>>> {
    this.usable('loadSnapshots');
    return readAllSnapshots<S>(this.db, this.logger);
  }

  async verify(): Promise<VerifyReport> {
    this.usable('verify');
    return verifyLog(this.db, this.logger);
  }

  /** Waits for queued appends to be written, ends live subscriptions, closes LevelDB. */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.flushing || this.flushScheduled || (this.queue.length > 0 && !this.failure)) {
      if (this.flushing) await this.flushing;
      else await new Promise((resolve) => setImmediate(resolve));
    }
    this.closed = true;
    if (!this.failure) this.live.complete();
    await this.db.close();
  }

  /** The raw LevelDB handle, for the benchmark's baseline and the corruption tests. Not for production use. */
  get rawDb(): Db {
    return this.db;
  }
}

/** Opens the durable event log in `dir` (see LevelEventStore.open). */
export function openLevelEventStore(
  dir: string,
  options: LevelEventStoreOptions = {},
): Promise<LevelEventStore> {
  return LevelEventStore.open(dir, options);
}

/**
 * Runs LevelDB's repair on `dir` after copying it aside to `<dir>.before-repair-<time>`, so the damaged
 * original is never the only copy. No sandboxd may hold the dir. Resolves with the copy's path.
 */
export async function repairEventLog(dir: string): Promise<string> {
  const copy = `${dir}.before-repair-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  await cp(dir, copy, { recursive: true, errorOnExist: true, force: false });
  await (Level as unknown as { repair(location: string): Promise<void> }).repair(dir);
  return copy;
}
