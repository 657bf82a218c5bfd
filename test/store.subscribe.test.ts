// Subscription: catch-up then live; events appended during catch-up arrive exactly once, in order, only once durable.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { EventEnvelope, NewEvent } from '../src/events/index.js';
import { createMemoryEventStore, type EventStore, openLevelEventStore } from '../src/store/index.js';
import { testRegistry } from './fixtures/store-registry.js';

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});
async function levelStore(liveBufferLimit?: number): Promise<EventStore> {
  const dir = await mkdtemp(join(tmpdir(), 'sandboxd-store-subscribe-'));
  dirs.push(dir);
  return openLevelEventStore(dir, {
    registry: testRegistry(),
    ...(liveBufferLimit ? { liveBufferLimit } : {}),
  });
}

const batch = (from: number, size: number): NewEvent[] =>
  Array.from({ length: size }, (_, i) => ({ type: 'Noted', data: { n: from + i } }));

async function prefill(store: EventStore, events: number): Promise<void> {
  const streams = 8;
  await Promise.all(
    Array.from({ length: streams }, async (_, s) => {
      for (let n = s * 100; n < events; n += streams * 100) {
        await store.append(`pre-${s}`, 'any', batch(n, Math.min(100, events - n)));
      }
    }),
  );
}

/**
 * Subscribes from `fromSeq` while appending `appends` batches; resolves with what the subscriber saw and how
 * many appends were acknowledged while it was still catching up on the prefilled events.
 */
async function subscribeWhileAppending(
  store: EventStore,
  fromSeq: number,
  prefilled: number,
  appends: number,
): Promise<{ seen: EventEnvelope[]; duringCatchUp: number; notDurable: number }> {
  const seen: EventEnvelope[] = [];
  let notDurable = 0;
  const target = prefilled + appends * 5;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const subscription = store.subscribe(fromSeq).subscribe({
    next: (event) => {
      // Persist before publish: the store already counts it as durable.
      if (event.seq > store.lastSeq()) notDurable++;
      seen.push(event);
      if (event.seq >= target) done();
    },
    error: (err) => assert.fail(err),
  });
  let duringCatchUp = 0;
  for (let i = 0; i < appends; i++) {
    await store.append(`live-${i % 3}`, 'any', batch(100_000 + i * 5, 5));
    const last = seen[seen.length - 1]?.seq ?? 0;
    if (last < prefilled) duringCatchUp++;
  }
  const timeout = setTimeout(() => done(), 30_000);
  await finished;
  clearTimeout(timeout);
  subscription.unsubscribe();
  return { seen, duringCatchUp, notDurable };
}

function assertExactlyOnceInOrder(seen: readonly EventEnvelope[], from: number, to: number): void {
  assert.equal(seen.length, to - from + 1, `saw ${seen.length} events, expected ${to - from + 1}`);
  seen.forEach((event, i) => {
    assert.equal(event.seq, from + i, `position ${i}`);
  });
}

const candidates: Array<[string, () => Promise<EventStore>]> = [
  ['memory store', async () => createMemoryEventStore({ registry: testRegistry() })],
  ['LevelDB store', () => levelStore()],
  ['LevelDB store with a 16-event live buffer (overflow falls back to catch-up)', () => levelStore(16)],
];

for (const [name, open] of candidates) {
  describe(`${name} subscriptions`, () => {
    it('delivers events appended during catch-up exactly once, in seq order, after the stored ones', async () => {
      const store = await open();
      try {
        const prefilled = 20_000;
        await prefill(store, prefilled);
        assert.equal(store.lastSeq(), prefilled);
        const { seen, duringCatchUp, notDurable } = await subscribeWhileAppending(store, 1, prefilled, 60);
        assertExactlyOnceInOrder(seen, 1, prefilled + 300);
        assert.equal(notDurable, 0, 'no event is published before it is durable');
        if (!name.startsWith('memory')) {
          assert.ok(duringCatchUp > 0, 'some appends were acknowledged while the subscriber was catching up');
        }
      } finally {
        await store.close();
      }
    });

    it('starts from a given seq and follows live appends', async () => {
      const store = await open();
      try {
        await prefill(store, 1_000);
        const { seen } = await subscribeWhileAppending(store, 990, 1_000, 10);
        assertExactlyOnceInOrder(seen, 990, 1_050);
      } finally {
        await store.close();
      }
    });

    it('stops delivering after unsubscribe', async () => {
      const store = await open();
      try {
        await store.append('s', 0, batch(0, 3));
        const seen: number[] = [];
        const subscription = store.subscribe().subscribe((event) => seen.push(event.seq));
        while (seen.length < 3) await new Promise((resolve) => setImmediate(resolve));
        subscription.unsubscribe();
        // Barrier: a subscriber made after the first must see the new events; by then the first would have.
        const marker: number[] = [];
        const after = store.subscribe(4).subscribe((event) => marker.push(event.seq));
        await store.append('s', 3, batch(3, 2));
        while (marker.length < 2) await new Promise((resolve) => setImmediate(resolve));
        after.unsubscribe();
        assert.deepEqual(marker, [4, 5]);
        assert.deepEqual(seen, [1, 2, 3]);
      } finally {
        await store.close();
      }
    });
  });
}
