// Corruption: damaged records are named by verify(), other streams stay readable, a damaged log opens without crashing.
import assert from 'node:assert/strict';
import { mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { Corruption } from '../src/errors/index.js';
import { type EventEnvelope, encodeEvent, encodeFrame } from '../src/events/index.js';
import { type LevelEventStore, openLevelEventStore, repairEventLog } from '../src/store/index.js';
import { testRegistry } from './fixtures/store-registry.js';

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});
const quiet = pino({ level: 'silent' });

async function filledStore(): Promise<{ dir: string; store: LevelEventStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'sandboxd-store-corruption-'));
  dirs.push(dir);
  const store = await openLevelEventStore(dir, { registry: testRegistry(), logger: quiet });
  // seq 1..9 interleaved over streams a, b, c: a = 1,4,7  b = 2,5,8  c = 3,6,9
  for (let round = 0; round < 3; round++) {
    for (const stream of ['a', 'b', 'c']) {
      await store.append(stream, round, [{ type: 'Noted', data: { n: round } }]);
    }
  }
  return { dir, store };
}

const eventKey = (seq: number): Buffer => {
  const key = Buffer.alloc(9);
  key[0] = 0x65; // 'e'
  key.writeUInt32BE(seq, 5);
  return key;
};

async function collect(iterable: AsyncIterable<EventEnvelope>): Promise<EventEnvelope[]> {
  const out: EventEnvelope[] = [];
  for await (const event of iterable) out.push(event);
  return out;
}

/** Where the longest piece (≥ 6 bytes) of `text` that occurs exactly once in `bytes` starts; -1 when none does. */
function uniquePieceOf(bytes: Buffer, text: string): number {
  for (let length = text.length; length >= 6; length--) {
    for (let start = 0; start + length <= text.length; start++) {
      const piece = Buffer.from(text.slice(start, start + length));
      const at = bytes.indexOf(piece);
      if (at >= 0 && bytes.indexOf(piece, at + 1) === -1) return at;
    }
  }
  return -1;
}

describe('a damaged event log', () => {
  it('names a record with a flipped byte by its seq, and other streams still read', async () => {
    const { store } = await filledStore();
    try {
      const record = (await store.rawDb.get(eventKey(5)))!;
      const damaged = Buffer.from(record);
      damaged[Math.floor(damaged.length / 2)]! ^= 0x04;
      await store.rawDb.put(eventKey(5), damaged);

      const report = await store.verify();
      assert.equal(report.ok, false);
      assert.deepEqual(
        report.problems.map((p) => [p.kind, p.seq]),
        [['checksum', 5]],
      );
      assert.equal(report.events, 9);

      assert.deepEqual(
        (await collect(store.readStream('a'))).map((e) => e.seq),
        [1, 4, 7],
      );
      assert.deepEqual(
        (await collect(store.readStream('c'))).map((e) => e.seq),
        [3, 6, 9],
      );
      await assert.rejects(collect(store.readStream('b')), (err: unknown) => {
        assert.ok(err instanceof Corruption);
        assert.equal(err.details.seq, 5);
        assert.match(err.message, /seq 5: checksum mismatch/);
        return true;
      });
      await assert.rejects(collect(store.readAll()), Corruption);
      assert.equal((await collect(store.readAll(6))).length, 4, 'reads past the damage work');
    } finally {
      await store.close();
    }
  });

  it('reports seq gaps, undecodable records, version duplicates and index mismatches with positions', async () => {
    const { store } = await filledStore();
    try {
      const db = store.rawDb;
      await db.del(eventKey(3)); // c@1 gone: a seq gap and an index entry pointing nowhere
      await db.put(eventKey(6), encodeFrame({ not: 'an event' })); // c@2 unreadable
      const a1 = (await collect(store.readStream('a')))[0]!;
      await db.put(eventKey(10), encodeEvent({ ...a1, seq: 10 })); // a@1 again, at seq 10

      const report = await store.verify();
      const kinds = report.problems.map(
        (p) => `${p.kind}:${p.seq ?? ''}:${p.stream ?? ''}:${p.version ?? ''}`,
      );
      assert.ok(kinds.includes('seq-gap:4::'), kinds.join(' '));
      assert.ok(kinds.includes('undecodable:6:c:2'), kinds.join(' '));
      assert.ok(kinds.includes('version-duplicate:10:a:1'), kinds.join(' '));
      assert.ok(kinds.includes('index-mismatch:3:c:1'), kinds.join(' '));
      assert.equal(report.lastSeq, 10);
      for (const problem of report.problems) assert.ok(problem.message.length > 0);
    } finally {
      await store.close();
    }
  });

  it('ignores a damaged snapshot (a cache) and verify names it', async () => {
    const { store } = await filledStore();
    try {
      await store.saveSnapshot({ stream: 'a', version: 3, state: { value: 'running' } });
      const key = Buffer.concat([Buffer.from('n'), Buffer.from('a')]);
      const frame = (await store.rawDb.get(key))!;
      frame[2]! ^= 0xff;
      await store.rawDb.put(key, frame);
      assert.equal(await store.loadSnapshot('a'), undefined);
      assert.equal((await store.loadSnapshots()).has('a'), false);
      const report = await store.verify();
      assert.deepEqual(
        report.problems.map((p) => [p.kind, p.key]),
        [['checksum', 'snapshot/a']],
      );
    } finally {
      await store.close();
    }
  });

  it('names a record whose bytes were flipped in the table file on disk, after a reopen', async () => {
    const { dir, store } = await tableOnDisk();
    const victim = (await collect(store.readStream('b')))[1]!; // seq 5
    await store.close();
    await settleIntoTable(dir);
    // Event ids are random, so Snappy mostly keeps them as literals: find a piece of this one that occurs
    // once in the table file (now and then 4 bytes of it match earlier data and become a back-reference).
    const table = await onlyTable(dir);
    const bytes = await readFile(table);
    const at = uniquePieceOf(bytes, victim.id);
    assert.ok(at > 0, 'a piece of the event id is in the table file');
    await patchFile(table, at + 1, Buffer.from([bytes[at + 1]! ^ 0x01]));

    const reopened = await openLevelEventStore(dir, { registry: testRegistry(), logger: quiet });
    try {
      const report = await reopened.verify();
      assert.deepEqual(
        report.problems.map((p) => [p.kind, p.seq, p.stream, p.version]),
        [['checksum', 5, 'b', 2]],
      );
      assert.equal((await collect(reopened.readStream('a'))).length, 3, 'other streams still read');
      assert.equal((await collect(reopened.readStream('bulk'))).length, 200);
    } finally {
      await reopened.close();
    }
  });

  it('opens a log whose table file is overwritten on disk and reports instead of crashing', async () => {
    const { dir, store } = await tableOnDisk();
    await store.close();
    await settleIntoTable(dir);
    await patchFile(await onlyTable(dir), 64, Buffer.alloc(256, 0xa5));

    const reopened = await openLevelEventStore(dir, { registry: testRegistry(), logger: quiet });
    try {
      const report = await reopened.verify();
      assert.equal(report.ok, false);
      assert.ok(report.problems.length > 0);
      await assert.rejects(collect(reopened.readAll()), Corruption);
    } finally {
      await reopened.close();
    }
  });
});

describe('repairEventLog', () => {
  it('copies the state dir aside before repairing, and the repaired log still reads', async () => {
    const { dir, store } = await filledStore();
    await store.close();
    const copy = await repairEventLog(dir);
    dirs.push(copy);
    assert.ok((await readdir(copy)).includes('CURRENT'), 'the copy is a full LevelDB directory');
    const reopened = await openLevelEventStore(dir, { registry: testRegistry(), logger: quiet });
    try {
      assert.equal(reopened.lastSeq(), 9);
      assert.equal((await reopened.verify()).ok, true);
    } finally {
      await reopened.close();
    }
  });
});

async function tableOnDisk(): Promise<{ dir: string; store: LevelEventStore }> {
  const { dir, store } = await filledStore();
  for (let i = 0; i < 200; i++) await store.append('bulk', 'any', [{ type: 'Noted', data: { n: i } }]);
  return { dir, store };
}

/** Reopening turns LevelDB's write-ahead log into a table file (.ldb), where the events then live. */
async function settleIntoTable(dir: string): Promise<void> {
  await (await openLevelEventStore(dir, { registry: testRegistry(), logger: quiet })).close();
}

async function onlyTable(dir: string): Promise<string> {
  const tables = (await readdir(dir)).filter((name) => name.endsWith('.ldb'));
  assert.equal(tables.length, 1, `one table file: ${tables.join(', ')}`);
  return join(dir, tables[0]!);
}

async function patchFile(path: string, offset: number, bytes: Buffer): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.write(bytes, 0, bytes.length, offset);
    await handle.sync();
  } finally {
    await handle.close();
  }
}
