// Opening the LevelDB log: the lock, LevelDB's own corruption reports made typed, the layout check, and the state
// the store starts from (the last seq, every stream's head), read in batches.
import { mkdir } from 'node:fs/promises';
import { Level } from 'level';
import type { Logger } from 'pino';
import { Corruption, Internal, SandboxdError, StateDirInUse } from '../errors/index.js';
import { decodeFrame, encodeFrame } from '../events/index.js';
import {
  eventKeyRange,
  layoutVersion,
  metaKey,
  parseStreamIndexVersion,
  seqOfEventKey,
  streamIndexKeyRange,
} from './keys.js';

export type Db = Level<Buffer, Buffer>;

/** Records fetched per nextv() call, and the bytes the iterator may buffer ahead (tuned by bench/store.ts). */
export const readBatchRecords = 1000;
export const readHighWaterMarkBytes = 1 << 20;

export interface LevelOpenOptions {
  /** The state dir named when another sandboxd holds the lock (default: `dir` itself). */
  readonly stateDir?: string;
  /** LevelDB memtable size in bytes (default 32 MiB). */
  readonly writeBufferSize?: number;
  /** LevelDB block cache in bytes (default 32 MiB). */
  readonly cacheSize?: number;
}

export function isLevelError(err: unknown, code: string): boolean {
  for (let e: unknown = err; e instanceof Error; e = (e as Error & { cause?: unknown }).cause) {
    if ((e as Error & { code?: unknown }).code === code) return true;
  }
  return false;
}

/** Runs a LevelDB read; LevelDB's own corruption reports become our typed Corruption naming the step. */
export async function levelRead<T>(step: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (isLevelError(err, 'LEVEL_CORRUPTION')) {
      throw new Corruption(
        step,
        `LevelDB: ${(err as Error).message}; run verify, copy the state dir aside`,
        {},
        err,
      );
    }
    throw new Internal(step, (err as Error).message, {}, err);
  }
}

/** Opens (creating if needed) the LevelDB in `dir`. Throws StateDirInUse, Corruption or Internal. */
export async function openLevelLog(
  dir: string,
  options: LevelOpenOptions,
  logger: Logger,
): Promise<{ db: Db; lastSeq: number; heads: Map<string, number> }> {
  await mkdir(dir, { recursive: true });
  const db: Db = new Level<Buffer, Buffer>(dir, {
    keyEncoding: 'buffer',
    valueEncoding: 'buffer',
    // A larger memtable means fewer level-0 files, so compaction falls behind (and LevelDB throttles
    // writes) much later when the cores are busy. The memory is bounded: two memtables.
    writeBufferSize: options.writeBufferSize ?? 32 << 20,
    cacheSize: options.cacheSize ?? 32 << 20,
  });
  try {
    await db.open();
  } catch (err) {
    if (isLevelError(err, 'LEVEL_LOCKED')) throw new StateDirInUse(options.stateDir ?? dir, err);
    if (isLevelError(err, 'LEVEL_CORRUPTION')) {
      logger.error({ err, step: 'open' }, 'event log is corrupt');
      throw new Corruption(
        'open event log',
        `LevelDB reports corruption in ${dir}: keep the directory (never delete it); repairEventLog copies ` +
          'it aside and then repairs it',
        { dir },
        err,
      );
    }
    throw new Internal('open event log', (err as Error).message, { dir }, err);
  }
  try {
    await checkLayout(db, dir);
    const lastSeq = await loadLastSeq(db);
    const heads = await loadHeads(db, logger);
    logger.debug({ lastSeq, streams: heads.size }, 'event log opened');
    return { db, lastSeq, heads };
  } catch (err) {
    await db.close().catch(() => undefined);
    if (err instanceof SandboxdError) throw err;
    throw new Internal('load event log', (err as Error).message, { dir }, err);
  }
}

async function checkLayout(db: Db, dir: string): Promise<void> {
  const stored = await db.get(metaKey('layout'));
  if (stored === undefined) {
    await db.put(metaKey('layout'), encodeFrame({ layout: layoutVersion }), { sync: true });
    return;
  }
  let layout: unknown;
  try {
    layout = (decodeFrame(stored) as { layout?: unknown }).layout;
  } catch {
    // A damaged meta record must not stop the daemon: the layout is the only one there is; verify() reports.
    return;
  }
  if (layout !== layoutVersion) {
    throw new Corruption('open event log', `layout ${String(layout)} is not ${layoutVersion}`, {
      dir,
      layout,
    });
  }
}

async function loadLastSeq(db: Db): Promise<number> {
  const keys = await db.keys({ ...eventKeyRange, reverse: true, limit: 1 }).all();
  return keys[0] === undefined ? 0 : seqOfEventKey(keys[0]);
}

/**
 * The head version of every stream: one forward scan of the stream index in batches, keeping the last
 * version seen per name (a seek per stream cost ~1 s for 91,000 short streams; the scan ~10× less). Heads are
 * not stored apart: one put less per append, and they can never disagree with the index.
 */
async function loadHeads(db: Db, logger: Logger): Promise<Map<string, number>> {
  const heads = new Map<string, number>();
  const iterator = db.keys<Buffer>({ ...streamIndexKeyRange, highWaterMarkBytes: readHighWaterMarkBytes });
  let name: Buffer | undefined;
  let stream = '';
  try {
    for (;;) {
      const keys = await iterator.nextv(readBatchRecords);
      if (keys.length === 0) break;
      for (const key of keys) {
        if (key.length < 10 || key[key.length - 9] !== 0) {
          logger.warn({ key: key.toString('hex'), step: 'load heads' }, 'malformed stream index key skipped');
          continue;
        }
        const nameEnd = key.length - 9;
        // Decode a name only when it changes: most keys repeat the stream of the key before.
        if (
          name === undefined ||
          name.length !== nameEnd - 1 ||
          key.compare(name, 0, name.length, 1, nameEnd) !== 0
        ) {
          name = key.subarray(1, nameEnd);
          stream = name.toString('utf8');
        }
        heads.set(stream, parseStreamIndexVersion(key));
      }
    }
  } finally {
    await iterator.close();
  }
  return heads;
}
