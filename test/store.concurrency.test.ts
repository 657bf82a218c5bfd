// Concurrency: racing appends with the same expected version → exactly one wins per version, no gap; group commit.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { ConcurrencyConflict, SandboxdError } from '../src/errors/index.js';
import { createMemoryEventStore, type EventStore, openLevelEventStore } from '../src/store/index.js';
import { testRegistry } from './fixtures/store-registry.js';

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sandboxd-store-concurrency-'));
  dirs.push(dir);
  return dir;
}

const noted = (n: number) => ({ type: 'Noted', data: { n } });

const stores: Array<[string, () => Promise<EventStore>]> = [
  ['memory store', async () => createMemoryEventStore({ registry: testRegistry() })],
  ['LevelDB store', async () => openLevelEventStore(await tempDir(), { registry: testRegistry() })],
];

for (const [name, open] of stores) {
  describe(`${name} under concurrent appends`, () => {
    it('lets exactly one of many appends with the same expected version win; the rest get conflicts', async () => {
      const store = await open();
      try {
        const results = await Promise.allSettled(
          Array.from({ length: 64 }, (_, i) => store.append('race', 0, [noted(i)])),
        );
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        assert.equal(won.length, 1);
        assert.equal(lost.length, 63);
        for (const { reason } of lost) {
          assert.ok(reason instanceof ConcurrencyConflict);
          assert.deepEqual([reason.stream, reason.expected, reason.actual], ['race', 0, 1]);
        }
        assert.equal(await store.streamVersion('race'), 1);
        assert.equal(store.lastSeq(), 1);
      } finally {
        await store.close();
      }
    });

    it('keeps versions gap-free while many writers race version after version', async () => {
      const store = await open();
      try {
        const wins = new Map<number, number>();
        let conflicts = 0;
        await Promise.all(
          Array.from({ length: 16 }, async (_, writer) => {
            for (let attempt = 0; attempt < 40; attempt++) {
              const version = await store.streamVersion('contended');
              try {
                const result = await store.append('contended', version, [noted(writer), noted(attempt)]);
                assert.equal(result.version, version + 2);
                wins.set(version, (wins.get(version) ?? 0) + 1);
              } catch (err) {
                if (!(err instanceof ConcurrencyConflict)) throw err;
                conflicts++;
              }
            }
          }),
        );
        assert.ok(conflicts > 0, 'the writers really raced');
        for (const [version, count] of wins) assert.equal(count, 1, `version ${version} won ${count} times`);
        const finalVersion = await store.streamVersion('contended');
        assert.equal(finalVersion, wins.size * 2);
        let expected = 0;
        const seqs: number[] = [];
        for await (const event of store.readStream('contended')) {
          assert.equal(event.version, ++expected);
          seqs.push(event.seq);
        }
        assert.equal(expected, finalVersion);
        // Each append's two events are adjacent in the global log: appends are atomic.
        for (let i = 0; i < seqs.length; i += 2) assert.equal(seqs[i + 1], seqs[i]! + 1);
        assert.equal((await store.verify()).ok, true);
      } finally {
        await store.close();
      }
    });
  });
}

describe('LevelDB group commit', () => {
  it('writes appends that arrive together in far fewer synced batches, in call order', async () => {
    const store = await openLevelEventStore(await tempDir(), { registry: testRegistry() });
    try {
      const results = await Promise.all(
        Array.from({ length: 256 }, (_, i) => store.append(`gc-${i % 32}`, 'any', [noted(i), noted(i)])),
      );
      for (const [i, result] of results.entries())
        assert.equal(result.firstSeq, 2 * i + 1, 'seqs follow call order');
      assert.equal(store.stats.appends, 256);
      assert.ok(store.stats.flushes <= 4, `256 appends took ${store.stats.flushes} synced batches`);
      assert.equal(store.lastSeq(), 512);
    } finally {
      await store.close();
    }
  });

  it('splits appenders who all waited on one batch into two overlapping batches, answered in seq order', async () => {
    const store = await openLevelEventStore(await tempDir(), { registry: testRegistry() });
    try {
      const live: number[] = [];
      const subscription = store.subscribe(1).subscribe((event) => live.push(event.seq));
      const answered: number[] = [];
      const rounds = 4;
      await Promise.all(
        Array.from({ length: 256 }, async (_, a) => {
          let version = 0;
          for (let round = 0; round < rounds; round++) {
            const result = await store.append(`split-${a}`, version, [noted(round)]);
            answered.push(result.firstSeq);
            version = result.version;
          }
        }),
      );
      subscription.unsubscribe();
      const total = 256 * rounds;
      assert.equal(store.lastSeq(), total);
      // Round 1 is one batch; each later round is the two halves (one batch per round would be 4 in all).
      assert.equal(store.stats.flushes, 1 + 2 * (rounds - 1));
      assert.deepEqual(
        answered,
        Array.from({ length: total }, (_, i) => i + 1),
        'answered in seq order',
      );
      assert.deepEqual(live, answered, 'published once each, in seq order, before being answered');
      assert.equal((await store.verify()).ok, true);
    } finally {
      await store.close();
    }
  });

  it('checks queued appends against queued heads: two in one group with the same expected version, one wins', async () => {
    const store = await openLevelEventStore(await tempDir(), { registry: testRegistry() });
    try {
      await store.append('s', 0, [noted(0)]);
      const flushesBefore = store.stats.flushes;
      const [first, second, third] = await Promise.allSettled([
        store.append('s', 1, [noted(1)]),
        store.append('s', 1, [noted(2)]),
        store.append('s', 2, [noted(3)]),
      ]);
      assert.equal(first.status, 'fulfilled');
      assert.equal(second.status, 'rejected');
      assert.ok((second as PromiseRejectedResult).reason instanceof ConcurrencyConflict);
      assert.equal(third.status, 'fulfilled', 'an append may build on one still queued in the same group');
      assert.equal(store.stats.flushes - flushesBefore, 1);
      assert.equal(await store.streamVersion('s'), 3);
    } finally {
      await store.close();
    }
  });

  it('never retries a failed write: the append fails and every later call throws the same typed error', async () => {
    const dir = await tempDir();
    // The failure is logged at error level by design; keep the test output readable.
    const store = await openLevelEventStore(dir, {
      registry: testRegistry(),
      logger: pino({ level: 'silent' }),
    });
    await store.append('s', 0, [noted(0)]);
    const db = store.rawDb as unknown as { batch: () => unknown };
    let writes = 0;
    db.batch = () => ({
      put() {},
      async write() {
        writes++;
        throw Object.assign(new Error('IO error: fdatasync: Input/output error'), { code: 'LEVEL_IO_ERROR' });
      },
    });
    const failures = await Promise.allSettled([
      store.append('s', 1, [noted(1)]),
      store.append('t', 0, [noted(2)]),
    ]);
    assert.equal(writes, 1, 'one failed batch, no retry');
    for (const failure of failures) {
      assert.equal(failure.status, 'rejected');
      assert.ok((failure as PromiseRejectedResult).reason instanceof SandboxdError);
      assert.equal((failure as PromiseRejectedResult).reason.code, 'INTERNAL');
      assert.match((failure as PromiseRejectedResult).reason.message, /fdatasync/);
    }
    await assert.rejects(store.append('u', 0, [noted(3)]), /unusable/);
    await assert.rejects(store.streamVersion('s'), /unusable/);
    assert.equal(writes, 1);
    delete (db as { batch?: unknown }).batch;
    await store.close();
    // Restart + replay recovers the durable part.
    const reopened = await openLevelEventStore(dir, { registry: testRegistry() });
    try {
      assert.equal(reopened.lastSeq(), 1);
      assert.equal((await reopened.verify()).ok, true);
    } finally {
      await reopened.close();
    }
  });
});
