// The durable EventStore on LevelDB: atomic batches, group commit with one fsync per flush, checksummed records.
import { cp } from 'node:fs/promises';
import { Level } from 'level';
import type { Logger } from 'pino';
import { type Observable, Subject } from 'rxjs';
import { ConcurrencyConflict, InvalidArgument, InvalidState } from '../errors/index.js';
import { type EventEnvelope, type EventRegistry, encodeEvent, type NewEvent } from '../events/index.js';
import { defaultLogger, defaultRegistry } from './defaults.js';
import { flatten } from './flatten.js';
import { GroupCommit, type PendingAppend, type PutOp } from './group-commit.js';
import { eventKey, streamIndexKey } from './keys.js';
import { type Db, type LevelOpenOptions, openLevelLog, readBatchRecords } from './level-open.js';
import { type LevelLogSource, readEventBatches, readStreamEvents } from './level-read.js';
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

/**
 * The LevelDB event log. Appends are checked against in-memory heads (including appends still queued)
 * as they arrive, queued, and written by the group committer (group-commit.ts): one synced batch per flush.
 */
export class LevelEventStore implements EventStore {
  /** Versions as durable on disk: what reads, listStreams and streamVersion report. */
  private readonly heads = new Map<string, number>();
  /** Versions including queued appends: what expected versions are checked against. */
  private readonly pendingHeads = new Map<string, number>();
  private durableSeq: number;
  private nextSeq: number;
  private readonly commit: GroupCommit;
  private readonly reads: LevelLogSource;
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
    this.commit = new GroupCommit({
      dir,
      db,
      logger,
      live: this.live,
      durable: (group) => this.durable(group),
    });
    this.reads = { db, registry, usable: (command) => this.usable(command) };
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
    if (this.commit.failure) throw this.commit.failure;
    if (this.closed) throw new InvalidState('event store', this.dir, 'closed', command);
  }

  /** How long the last synced batch took, in ms (the batch grows while the next one is in flight). */
  get lastFlushMs(): number {
    return this.commit.lastFlushMs;
  }

  /** Counters for benchmarks and `sandboxctl info`. */
  get stats(): StoreStats {
    return this.commit.stats;
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
        this.commit.add({ stream, ops, bytes, result, resolve, reject });
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** A batch is durable: reads may see its events now. */
  private durable(group: readonly PendingAppend[]): void {
    for (const pending of group) this.heads.set(pending.stream, pending.result.version);
    this.durableSeq = group[group.length - 1]!.result.lastSeq;
  }

  readStream(stream: string, fromVersion = 1): AsyncIterable<EventEnvelope> {
    return readStreamEvents(this.reads, stream, fromVersion);
  }

  readAll(fromSeq = 1): AsyncIterable<EventEnvelope> {
    return flatten(this.readAllBatches(fromSeq));
  }

  /**
   * Batches of decoded events with seq ≥ fromSeq, as read by one nextv() each: the fast path for replay
   * (no per-event await). Same checks as readAll.
   */
  readAllBatches(fromSeq = 1, batchRecords = readBatchRecords): AsyncIterable<EventEnvelope[]> {
    return readEventBatches(this.reads, fromSeq, batchRecords);
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
    await this.commit.drain();
    this.closed = true;
    if (!this.commit.failure) this.live.complete();
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
