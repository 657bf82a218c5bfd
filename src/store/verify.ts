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

/** Checks checksums, seq continuity, per-stream versions, the stream index (whence the heads) and snapshots. */
export async function verifyLog(db: Db, logger: Logger): Promise<VerifyReport> {
  const problems: VerifyProblem[] = [];
  const report = (problem: VerifyProblem): void => {
    problems.push(problem);
  };
  const streams = new Map<string, StreamSeen>();
  /** Records that failed to decode, by seq; the stream index later tells whose they were. */
  const damaged = new Map<
    number,
    { kind: 'checksum' | 'undecodable'; message: string; stream?: string; version?: number }
  >();
  /** Version jumps, judged after the index walk: a jump over damaged records is not a gap of its own. */
  const jumps: Array<{ stream: string; from: number; to: number; seq: number }> = [];
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
        const problem = err instanceof RecordDecodeError ? err.problem : (err as Error).message;
        damaged.set(seq, { kind, message: `seq ${seq}: ${problem}` });
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
      if (version !== seen.lastVersion + 1) jumps.push({ stream, from: seen.lastVersion, to: version, seq });
      seen.lastVersion = version;
      seen.seqs[version - 1] = seq;
    }),
  );

  /** stream → versions whose records are damaged (known from the index). */
  const damagedVersions = new Map<string, Set<number>>();
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
      const broken = damaged.get(seq);
      if (broken && broken.stream === undefined) {
        // Already reported as damaged; the index tells whose record it was.
        broken.stream = stream;
        broken.version = version;
        let versions = damagedVersions.get(stream);
        if (!versions) {
          versions = new Set();
          damagedVersions.set(stream, versions);
        }
        versions.add(version);
        return;
      }
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
  for (const [seq, broken] of damaged) {
    report({
      kind: broken.kind,
      seq,
      ...(broken.stream === undefined ? {} : { stream: broken.stream, version: broken.version }),
      message:
        broken.stream === undefined
          ? broken.message
          : `${broken.message} (${broken.stream}@${broken.version})`,
    });
  }
  for (const { stream, from, to, seq } of jumps) {
    const known = damagedVersions.get(stream);
    let explained = true;
    for (let v = from + 1; v < to && explained; v++) explained = known?.has(v) ?? false;
    if (!explained) {
      report({
        kind: 'version-gap',
        seq,
        stream,
        version: to,
        message: `${stream} jumps from version ${from} to ${to} at seq ${seq}`,
      });
    }
  }
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

  // Log order, then the rest (snapshots, read failures) as found.
  const ordered = problems
    .map((problem, i) => ({ problem, i }))
    .sort((x, y) => (x.problem.seq ?? Infinity) - (y.problem.seq ?? Infinity) || x.i - y.i)
    .map(({ problem }) => problem);
  const listed = ordered.slice(0, maxListedProblems);
  if (ordered.length > maxListedProblems) {
    listed.push({
      kind: 'undecodable',
      message: `${ordered.length - maxListedProblems} more problems not listed`,
    });
  }
  return { ok: problems.length === 0, events, streams: streams.size, lastSeq, problems: listed };
}
