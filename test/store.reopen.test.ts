// Reopening the LevelDB log restores lastSeq, every stream head and the expected versions appends build on.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConcurrencyConflict } from '../src/errors/index.js';
import { openLevelEventStore } from '../src/store/index.js';
import { testRegistry } from './fixtures/store-registry.js';

let dir = '';
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('reopening the event log', () => {
  it('finds every stream head again, including names that prefix one another', async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-store-reopen-'));
    const streams = [
      'a',
      'ab',
      'a-1',
      'a\u00ff',
      'b',
      'sandbox-x',
      'container-x-1',
      'ä-unicode',
      'z'.repeat(300),
    ];
    const first = await openLevelEventStore(dir, { registry: testRegistry() });
    for (const [i, stream] of streams.entries()) {
      for (let v = 0; v <= i; v++) await first.append(stream, v, [{ type: 'Noted', data: { n: v } }]);
    }
    const before = await first.listStreams();
    const lastSeq = first.lastSeq();
    await first.close();

    const store = await openLevelEventStore(dir, { registry: testRegistry() });
    try {
      assert.deepEqual(await store.listStreams(), before);
      assert.equal(before.length, streams.length);
      assert.equal(store.lastSeq(), lastSeq);
      for (const [i, stream] of streams.entries())
        assert.equal(await store.streamVersion(stream), i + 1, stream);
      await assert.rejects(store.append('ab', 1, [{ type: 'Noted', data: { n: 9 } }]), ConcurrencyConflict);
      const next = await store.append('ab', 2, [{ type: 'Noted', data: { n: 9 } }]);
      assert.deepEqual([next.version, next.firstSeq], [3, lastSeq + 1]);
    } finally {
      await store.close();
    }
  });
});
