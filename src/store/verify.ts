// verify(): walks the whole LevelDB log and reports damage with positions; never throws for damage.
import type { Level } from 'level';
import type { Logger } from 'pino';
import { decodeEvent, decodeFrame, RecordDecodeError } from '../events/index.js';
import {
  eventKeyRange,
  namedRange,
  nameOfKey,
  parseStreamIndexKey,
  prefix,
  readU64,
  seqOfEventKey,
  streamIndexKeyRange,
} from './keys.js';
import type { VerifyProblem, VerifyReport } from './types.js';

type Db = Level<Buffer, Buffer>;

/** Problems listed in full; past this the report says how many more there were. */
const maxListedProblems = 1000;

interface StreamSeen {
  /** seqs[version - 1] = seq of that version as found in the log. */
  readonly seqs: number[];
  readonly indexed: boolean[];
  lastVersion: number;
}

async function walk(
  db: Db,
  range: { gte: Buffer; lt: Buffer },
  onEntry: (key: Buffer, value: Buffer) => void,
): Promise<void> {
  const iterator = db.iterator({ ...range, fillCache: false, highWaterMarkBytes: 1 << 20 });
  try {
    for (;;) {
      const entries = await iterator.nextv(1000);
      if (entries.length === 0) return;
      for (const [key, value] of entries) onEntry(key, value);
    }
  } finally {
    await iterator.close();
  }
}

/** Checks checksums, seq continuity, per-stream versions, the stream index, heads and snapshots. */
export async function verifyLog(db: Db, logger: Logger): Promise<VerifyReport> {
  const problems: VerifyProblem[] = [];
  let unlisted = 0;
  const report = (problem: VerifyProblem): void => {
    if (problems.length < maxListedProblems) problems.push(problem);
    else unlisted++;
  };
  const streams = new Map<string, StreamSeen>();
  let events = 0;
  let lastSeq = 0;

  const guarded = async (what: string, run: () => Promise<void>): Promise<void> => {
    try {
      await run();
    } catch (err) {
      // LevelDB itself refused to read on (e.g. a damaged table block): report where we stopped.
      logger.error({ err, step: `verify ${what}` }, 'verify could not read on');
      report({ kind: 'undecodable', message: `${what}: LevelDB read failed: ${(err as Error).message}` });
    }
  };

  await guarded('event log', () =>
    walk(db, eventKeyRange, (key, value) => {
      if (key.length !== 9) {
        report({
          kind: 'index-mismatch',
          key: key.toString('hex'),
          message: 'event key of the wrong length',
        });
        return;
      }
      const seq = seqOfEventKey(key);
      events++;
      if (seq !== lastSeq + 1) {
        report({
          kind: 'seq-gap',
          seq,
          message:
            seq > lastSeq + 1 ? `seq ${lastSeq + 1}..${seq - 1} missing` : `seq ${seq} after ${lastSeq}`,
        });
      }
      lastSeq = Math.max(lastSeq, seq);
      let event: ReturnType<typeof decodeEvent>;
      try {
        event = decodeEvent(value);
      } catch (err) {
        const kind = err instanceof RecordDecodeError ? err.reason : 'undecodable';
        report({ kind, seq, message: `seq ${seq}: ${(err as Error).message}` });
        return;
      }
      if (event.seq !== seq) {
        report({
          kind: 'index-mismatch',
          seq,
          stream: event.stream,
          version: event.version,
          message: `record under seq ${seq} says seq ${event.seq}`,
        });
      }
      let seen = streams.get(event.stream);
      if (!seen) {
        seen = { seqs: [], indexed: [], lastVersion: 0 };
        streams.set(event.stream, seen);
      }
      const { version, stream } = event;
      if (version <= seen.lastVersion) {
        report({
          kind: 'version-duplicate',
          seq,
          stream,
          version,
          message: `${stream} version ${version} again at seq ${seq} (already at ${seen.lastVersion})`,
        });
        return;
      }
      if (version !== seen.lastVersion + 1) {
        report({
          kind: 'version-gap',
          seq,
          stream,
          version,
          message: `${stream} jumps from version ${seen.lastVersion} to ${version} at seq ${seq}`,
        });
      }
      seen.lastVersion = version;
      seen.seqs[version - 1] = seq;
    }),
  );

  await guarded('stream index', () =>
    walk(db, streamIndexKeyRange, (key, value) => {
      if (key.length < 10 || key[key.length - 9] !== 0) {
        report({ kind: 'index-mismatch', key: key.toString('hex'), message: 'malformed stream index key' });
        return;
      }
      const { stream, version } = parseStreamIndexKey(key);
      if (value.length !== 8) {
        report({
          kind: 'index-mismatch',
          stream,
          version,
          message: `index of ${stream}@${version}: bad value`,
        });
        return;
      }
      const seq = readU64(value);
      const seen = streams.get(stream);
      const logged = seen?.seqs[version - 1];
      if (logged !== seq) {
        report({
          kind: 'index-mismatch',
          seq,
          stream,
          version,
          message: `index says ${stream}@${version} is seq ${seq}; the log has ${logged === undefined ? 'no such event' : `seq ${logged}`}`,
        });
      }
      if (seen && logged !== undefined) seen.indexed[version - 1] = true;
    }),
  );
  for (const [stream, seen] of streams) {
    seen.seqs.forEach((seq, i) => {
      if (!seen.indexed[i]) {
        report({
          kind: 'index-mismatch',
          seq,
          stream,
          version: i + 1,
          message: `${stream}@${i + 1} is not indexed`,
        });
      }
    });
  }

  const headed = new Set<string>();
  await guarded('stream heads', () =>
    walk(db, namedRange(prefix.head), (key, value) => {
      const stream = nameOfKey(key);
      headed.add(stream);
      const head = value.length === 8 ? readU64(value) : undefined;
      const logged = streams.get(stream)?.lastVersion ?? 0;
      if (head !== logged) {
        report({
          kind: 'index-mismatch',
          stream,
          version: logged,
          key: `head/${stream}`,
          message: `head of ${stream} says ${head ?? 'garbage'}; the log reaches version ${logged}`,
        });
      }
    }),
  );
  for (const [stream, seen] of streams) {
    if (!headed.has(stream)) {
      report({
        kind: 'index-mismatch',
        stream,
        version: seen.lastVersion,
        key: `head/${stream}`,
        message: `${stream} has no head`,
      });
    }
  }

  await guarded('snapshots', () =>
    walk(db, namedRange(prefix.snapshot), (key, value) => {
      const stream = nameOfKey(key);
      try {
        decodeFrame(value);
      } catch (err) {
        const kind = err instanceof RecordDecodeError ? err.reason : 'undecodable';
        report({
          kind,
          stream,
          key: `snapshot/${stream}`,
          message: `snapshot of ${stream}: ${(err as Error).message}`,
        });
      }
    }),
  );

  if (unlisted > 0) {
    problems.push({ kind: 'undecodable', message: `${unlisted} more problems not listed` });
  }
  return { ok: problems.length === 0, events, streams: streams.size, lastSeq, problems };
}
