// Upcasting: an event stored at an old schema reads back as the current one, on every read path.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { firstValueFrom, take, toArray } from 'rxjs';
import { Corruption } from '../src/errors/index.js';
import type { EventEnvelope } from '../src/events/index.js';
import { openLevelEventStore } from '../src/store/index.js';
import { oldRegistry, testRegistry } from './fixtures/store-registry.js';

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function collect(iterable: AsyncIterable<EventEnvelope>): Promise<EventEnvelope[]> {
  const out: EventEnvelope[] = [];
  for await (const event of iterable) out.push(event);
  return out;
}

/** A log written by an "older daemon" whose Renamed was at schema 1 ({ name }). */
async function oldLog(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sandboxd-store-upcast-'));
  dirs.push(dir);
  const old = await openLevelEventStore(dir, { registry: oldRegistry() });
  try {
    const written = await old.append('person-1', 0, [
      { type: 'Renamed', data: { name: 'Ada King Lovelace' } },
    ]);
    assert.equal(written.events[0]!.schema, 1);
  } finally {
    await old.close();
  }
  return dir;
}

describe('reading events stored at an old schema', () => {
  it('lifts them to the current schema in readStream, readAll and subscribe', async () => {
    const dir = await oldLog();
    const store = await openLevelEventStore(dir, { registry: testRegistry() });
    try {
      const current = { first: 'Ada', last: 'King Lovelace' };
      const [byStream] = await collect(store.readStream('person-1'));
      assert.equal(byStream!.schema, 2);
      assert.deepEqual(byStream!.data, current);
      const [byLog] = await collect(store.readAll());
      assert.deepEqual([byLog!.schema, byLog!.data], [2, current]);
      const [live] = await firstValueFrom(store.subscribe().pipe(take(1), toArray()));
      assert.deepEqual([live!.schema, live!.data], [2, current]);

      // New appends are validated and stored at the current schema; old and new read alike.
      await store.append('person-1', 1, [{ type: 'Renamed', data: { first: 'Grace', last: 'Hopper' } }]);
      const all = await collect(store.readStream('person-1'));
      assert.deepEqual(
        all.map((e) => [e.schema, e.data]),
        [
          [2, current],
          [2, { first: 'Grace', last: 'Hopper' }],
        ],
      );
      assert.equal((await store.verify()).ok, true);
    } finally {
      await store.close();
    }
  });

  it('refuses, as corruption, an event stored at a schema newer than this build knows', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandboxd-store-upcast-'));
    dirs.push(dir);
    const newer = await openLevelEventStore(dir, { registry: testRegistry() });
    await newer.append('person-2', 0, [{ type: 'Renamed', data: { first: 'Alan', last: 'Turing' } }]);
    await newer.close();
    const older = await openLevelEventStore(dir, {
      registry: oldRegistry(),
      logger: pino({ level: 'silent' }),
    });
    try {
      await assert.rejects(collect(older.readStream('person-2')), (err: unknown) => {
        assert.ok(err instanceof Corruption);
        assert.match(err.message, /schema 2, newer than this build's 1/);
        return true;
      });
    } finally {
      await older.close();
    }
  });
});
