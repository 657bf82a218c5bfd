// Snapshots in LevelDB: one key per stream under the snapshot prefix, a frame holding {stream, version, state}.
// They are a cache (no fsync; a damaged one is skipped with a warning and costs only a longer replay).
import type { Level } from 'level';
import type { Logger } from 'pino';
import { decodeFrame, encodeFrame } from '../events/index.js';
import { namedRange, nameOfKey, prefix, snapshotKey } from './keys.js';
import type { StoredSnapshot } from './types.js';

type SnapshotDb = Level<Buffer, Buffer>;

const scanBatch = 1024;

export function writeSnapshot<S>(
  db: SnapshotDb,
  { stream, version, state }: StoredSnapshot<S>,
): Promise<void> {
  return db.put(snapshotKey(stream), encodeFrame({ stream, version, state }));
}

function decodeSnapshot<S>(stream: string, value: Buffer, logger: Logger): StoredSnapshot<S> | undefined {
  try {
    const snapshot = decodeFrame(value) as StoredSnapshot<S>;
    if (snapshot?.stream !== stream || !Number.isSafeInteger(snapshot.version)) {
      throw new Error('not a snapshot of this stream');
    }
    return snapshot;
  } catch (err) {
    logger.warn({ err, stream, step: 'load snapshot' }, 'ignoring a damaged snapshot (replaying instead)');
    return undefined;
  }
}

export async function readSnapshot<S>(
  db: SnapshotDb,
  stream: string,
  logger: Logger,
): Promise<StoredSnapshot<S> | undefined> {
  const value = await db.get(snapshotKey(stream));
  return value === undefined ? undefined : decodeSnapshot<S>(stream, value, logger);
}

/** Every snapshot in one ordered scan (a recovery reads them all: one range read, not a get per stream). */
export async function readAllSnapshots<S>(
  db: SnapshotDb,
  logger: Logger,
): Promise<Map<string, StoredSnapshot<S>>> {
  const out = new Map<string, StoredSnapshot<S>>();
  const iterator = db.iterator(namedRange(prefix.snapshot));
  try {
    for (;;) {
      const entries = await iterator.nextv(scanBatch);
      if (entries.length === 0) return out;
      for (const [key, value] of entries) {
        const stream = nameOfKey(key);
        const snapshot = decodeSnapshot<S>(stream, value, logger);
        if (snapshot) out.set(stream, snapshot);
      }
    }
  } finally {
    await iterator.close();
  }
}
