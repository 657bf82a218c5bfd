// The group committer of the LevelDB log: queued appends go to disk as one synced batch per flush, in seq order.
import type { Logger } from 'pino';
import type { Subject } from 'rxjs';
import { Internal, type SandboxdError } from '../errors/index.js';
import type { EventEnvelope } from '../events/index.js';
import type { Db } from './level-open.js';
import type { AppendResult, StoreStats } from './types.js';

export type PutOp = { type: 'put'; key: Buffer; value: Buffer };

/** An append whose seq and version are taken, waiting for its batch to be durable. */
export interface PendingAppend {
  readonly stream: string;
  readonly ops: PutOp[];
  readonly bytes: number;
  readonly result: AppendResult;
  readonly resolve: (result: AppendResult) => void;
  readonly reject: (err: unknown) => void;
}

export interface GroupCommitOptions {
  readonly dir: string;
  readonly db: Db;
  readonly logger: Logger;
  /** Where events are published once durable (persist before publish); errored when a write fails. */
  readonly live: Subject<EventEnvelope>;
  /** Called as a batch becomes durable, before the next batch goes out and before anyone hears of this one. */
  readonly durable: (group: readonly PendingAppend[]) => void;
}

/** A flush stops taking appends past this many bytes; the rest go in the next one. */
const maxFlushBytes = 8 << 20;
/** Groups at least this large make the next burst split in two (smaller ones gain nothing from it). */
const minSplitGroup = 16;

/**
 * Writes queued appends, one synced batch at a time. A failed write is never retried (LevelDB's errors are
 * sticky): `failure` is set, every append queued or in flight is rejected with it, and so is `live`.
 */
export class GroupCommit {
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
  failure: SandboxdError | undefined;

  constructor(private readonly options: GroupCommitOptions) {}

  /** Queues an append for the next batch; it settles when that batch is durable (or failed). */
  add(pending: PendingAppend): void {
    this.queue.push(pending);
    this.scheduleFlush();
  }

  /** Resolves once every queued append is written (or the log has failed). */
  async drain(): Promise<void> {
    while (this.flushing || this.flushScheduled || (this.queue.length > 0 && !this.failure)) {
      if (this.flushing) await this.flushing;
      else await new Promise((resolve) => setImmediate(resolve));
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
      const batch = this.options.db.batch();
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
    this.options.durable(group);

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
        for (const event of pending.result.events) this.options.live.next(event);
      }
    } catch (err) {
      // A subscriber's fault must not leave durable appends unacknowledged.
      this.options.logger.error({ err, step: 'publish' }, 'a subscriber threw while receiving events');
    }
    for (const pending of group) pending.resolve(pending.result);
  }

  /** The store is unusable from now on: LevelDB's write errors are sticky. */
  private fail(err: unknown, group: readonly PendingAppend[]): void {
    this.failure = new Internal(
      'event log write (fsync)',
      `${(err as Error).message ?? String(err)}; the event log is unusable until sandboxd restarts and replays it`,
      { dir: this.options.dir },
      err,
    );
    this.options.logger.error(
      { err, step: 'event log write (fsync)', appends: group.length },
      'event log write failed',
    );
    const queued = this.queue;
    this.queue = [];
    for (const pending of group) pending.reject(this.failure);
    for (const pending of queued) pending.reject(this.failure);
    this.options.live.error(this.failure);
  }
}
