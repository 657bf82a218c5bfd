// The event store's contract: few verbs, optimistic concurrency in the signature.
import type { Observable } from 'rxjs';
import type { EventEnvelope, NewEvent } from '../events/index.js';

/** `expectedVersion`: the stream's current version (0 = the stream must not exist yet), or 'any'. */
export type ExpectedVersion = number | 'any';

export interface AppendResult {
  /** The stream's version after the append. */
  readonly version: number;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly events: readonly EventEnvelope[];
}

export interface StoredSnapshot<S = unknown> {
  readonly stream: string;
  /** The stream version the snapshot includes. */
  readonly version: number;
  readonly state: S;
}

export interface VerifyProblem {
  readonly kind:
    | 'checksum'
    | 'seq-gap'
    | 'version-gap'
    | 'version-duplicate'
    | 'undecodable'
    | 'index-mismatch';
  readonly seq?: number;
  readonly stream?: string;
  readonly version?: number;
  readonly key?: string;
  readonly message: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly events: number;
  readonly streams: number;
  readonly lastSeq: number;
  readonly problems: readonly VerifyProblem[];
}

export interface StreamInfo {
  readonly stream: string;
  readonly version: number;
}

/**
 * The append-only event log. Implementations: LevelDB (durable) and in-memory (tests);
 * both pass test/store.contract.test.ts.
 */
/** Counters of the durable writer, since the store opened. */
export interface StoreStats {
  /** Synced batches written (one fsync each). */
  readonly flushes: number;
  readonly appends: number;
  readonly events: number;
  /** Summed time of the synced batch writes, in ms. */
  readonly flushMs: number;
}

export interface EventStore {
  /**
   * Appends `events` to `stream` atomically once the stream is at `expectedVersion`.
   * Resolves only after the write is durable (fsync, group-committed).
   * Throws ConcurrencyConflict (stream, expected, actual) and writes nothing otherwise;
   * InvalidArgument for an unknown event type or data its validator refuses.
   */
  append(
    stream: string,
    expectedVersion: ExpectedVersion,
    events: readonly NewEvent[],
  ): Promise<AppendResult>;
  /** Events of one stream with version ≥ fromVersion (default 1), in version order. */
  readStream(stream: string, fromVersion?: number): AsyncIterable<EventEnvelope>;
  /** All events with seq ≥ fromSeq (default 1), in seq order. */
  readAll(fromSeq?: number): AsyncIterable<EventEnvelope>;
  /**
   * The same events as readAll, in arrays as read from storage: the fast path for replaying a whole log
   * (no per-event await). Optional; both stores here provide it.
   */
  readAllBatches?(fromSeq?: number): AsyncIterable<readonly EventEnvelope[]>;
  /**
   * Every event at or after `fromSeq` exactly once, in seq order: the stored ones first, then live
   * ones as their appends become durable. Unsubscribe to stop.
   */
  subscribe(fromSeq?: number): Observable<EventEnvelope>;
  /** Current version of a stream (0 if absent). */
  streamVersion(stream: string): Promise<number>;
  /** Streams whose name starts with `prefix` (all when omitted), with their versions. */
  listStreams(prefix?: string): Promise<StreamInfo[]>;
  /** Seq of the last durable event (0 when empty). */
  lastSeq(): number;
  /** Snapshots are a cache: deleting them changes nothing but speed. */
  saveSnapshot<S>(snapshot: StoredSnapshot<S>): Promise<void>;
  loadSnapshot<S>(stream: string): Promise<StoredSnapshot<S> | undefined>;
  /** Every stored snapshot by stream, in one read (recovery loads them all). */
  loadSnapshots<S>(): Promise<Map<string, StoredSnapshot<S>>>;
  /** Walks the whole log; never throws for damage, reports it. */
  verify(): Promise<VerifyReport>;
  close(): Promise<void>;
  /** Writer counters, where the store keeps them (the LevelDB store does). */
  readonly stats?: StoreStats;
}
