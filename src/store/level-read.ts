// Reading the LevelDB log: one stream through its index, the whole log in batches, records decoded or Corruption.
import { Corruption } from '../errors/index.js';
import { decodeEvent, type EventEnvelope, type EventRegistry, RecordDecodeError } from '../events/index.js';
import { eventKey, eventKeyRange, prefix, seqOfEventKey, streamIndexRange } from './keys.js';
import { type Db, levelRead, readBatchRecords, readHighWaterMarkBytes } from './level-open.js';
import { checkStream } from './prepare.js';

/** What a read needs of the store. */
export interface LevelLogSource {
  readonly db: Db;
  /** Upcasts and validates what is read. */
  readonly registry: EventRegistry;
  /** Throws once the store failed or closed; called as a read starts (its first next()), naming the verb. */
  usable(command: string): void;
}

/** The events of `stream` from `fromVersion`, through the stream index; a seq it names but the log lacks is Corruption. */
export async function* readStreamEvents(
  source: LevelLogSource,
  stream: string,
  fromVersion: number,
): AsyncIterable<EventEnvelope> {
  source.usable('readStream');
  checkStream(stream);
  const { db } = source;
  const iterator = db.iterator({
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
      const values = await levelRead('read stream', () => db.getMany(keys));
      for (let i = 0; i < values.length; i++) {
        const value = values[i];
        const seq = seqOfEventKey(keys[i]!);
        if (value === undefined) {
          throw new Corruption('read stream', `index of ${stream} names seq ${seq}, which is missing`, {
            stream,
            seq,
          });
        }
        yield decodeRecord(source.registry, value, seq);
      }
    }
  } finally {
    await iterator.close();
  }
}

/**
 * Batches of decoded events with seq ≥ fromSeq, as read by one nextv() of `batchRecords` each: the fast
 * path for replay (no per-event await).
 */
export async function* readEventBatches(
  source: LevelLogSource,
  fromSeq: number,
  batchRecords: number,
): AsyncIterable<EventEnvelope[]> {
  source.usable('readAll');
  const { registry } = source;
  const iterator = source.db.iterator({
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
        out[i] = decodeRecord(registry, value, key);
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
function decodeRecord(registry: EventRegistry, value: Buffer, at: Buffer | number): EventEnvelope {
  try {
    return decodeEvent(value, registry);
  } catch (err) {
    const seq = typeof at === 'number' ? at : seqOfEventKey(at);
    const problem = err instanceof RecordDecodeError ? err.problem : (err as Error).message;
    throw new Corruption('read event', `seq ${seq}: ${problem}`, { seq }, err);
  }
}
