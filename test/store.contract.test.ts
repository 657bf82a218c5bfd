// The EventStore contract, run against the in-memory and the LevelDB store alike.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { firstValueFrom, take, toArray } from 'rxjs';
import { ConcurrencyConflict, InvalidArgument } from '../src/errors/index.js';
import type { EventEnvelope } from '../src/events/index.js';
import * as storeModule from '../src/store/index.js';
import { createMemoryEventStore, type EventStore } from '../src/store/index.js';
import { testRegistry } from './fixtures/store-registry.js';

interface Candidate {
  readonly name: string;
  open(): Promise<EventStore>;
}

const tempDirs: string[] = [];
after(async () => {
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
});

const candidates: Candidate[] = [
  { name: 'memory store', open: async () => createMemoryEventStore({ registry: testRegistry() }) },
];
// The LevelDB store joins the suite through the same door.
const openLevel = (storeModule as unknown as Record<string, unknown>).openLevelEventStore as
  | ((dir: string, options: { registry: ReturnType<typeof testRegistry> }) => Promise<EventStore>)
  | undefined;
if (openLevel) {
  candidates.push({
    name: 'LevelDB store',
    open: async () => {
      const dir = await mkdtemp(join(tmpdir(), 'sandboxd-store-contract-'));
      tempDirs.push(dir);
      return openLevel(dir, { registry: testRegistry() });
    },
  });
}

async function collect(iterable: AsyncIterable<EventEnvelope>): Promise<EventEnvelope[]> {
  const out: EventEnvelope[] = [];
  for await (const event of iterable) out.push(event);
  return out;
}

const noted = (n: number) => ({ type: 'Noted', data: { n } });

for (const candidate of candidates) {
  describe(`${candidate.name} contract`, () => {
    it('appends to a new stream and returns the version, the global positions and the envelopes', async () => {
      const store = await candidate.open();
      try {
        const result = await store.append('sandbox-a', 0, [noted(1), { ...noted(2), causationId: 'c1' }]);
        assert.equal(result.version, 2);
        assert.equal(result.firstSeq, 1);
        assert.equal(result.lastSeq, 2);
        assert.equal(result.events.length, 2);
        const [first, second] = result.events;
        assert.equal(first!.seq, 1);
        assert.equal(first!.stream, 'sandbox-a');
        assert.equal(first!.version, 1);
        assert.equal(first!.type, 'Noted');
        assert.equal(first!.schema, 1);
        assert.match(first!.id, /^[A-Za-z0-9_-]{21}$/);
        assert.ok(!Number.isNaN(Date.parse(first!.at)));
        assert.deepEqual(first!.data, { n: 1 });
        assert.equal(second!.causationId, 'c1');
        assert.equal(second!.version, 2);
        assert.equal(store.lastSeq(), 2);
        assert.equal(await store.streamVersion('sandbox-a'), 2);
        assert.equal(await store.streamVersion('sandbox-none'), 0);
      } finally {
        await store.close();
      }
    });

    it('refuses a wrong expected version with a conflict naming stream, expected and actual, and writes nothing', async () => {
      const store = await candidate.open();
      try {
        await store.append('s', 0, [noted(1)]);
        await assert.rejects(store.append('s', 0, [noted(2)]), (err: unknown) => {
          assert.ok(err instanceof ConcurrencyConflict);
          assert.equal(err.code, 'CONFLICT');
          assert.equal(err.stream, 's');
          assert.equal(err.expected, 0);
          assert.equal(err.actual, 1);
          assert.deepEqual(err.details, { stream: 's', expected: 0, actual: 1 });
          return true;
        });
        await assert.rejects(store.append('new', 3, [noted(2)]), ConcurrencyConflict);
        assert.equal(store.lastSeq(), 1);
        assert.equal(await store.streamVersion('new'), 0);
        const again = await store.append('s', 1, [noted(3)]);
        assert.equal(again.version, 2);
        assert.equal(again.firstSeq, 2);
      } finally {
        await store.close();
      }
    });

    it("appends at any version with 'any'", async () => {
      const store = await candidate.open();
      try {
        await store.append('s', 'any', [noted(1)]);
        const result = await store.append('s', 'any', [noted(2)]);
        assert.equal(result.version, 2);
      } finally {
        await store.close();
      }
    });

    it('refuses unknown types, invalid data and bad arguments with InvalidArgument naming the field', async () => {
      const store = await candidate.open();
      try {
        const field = async (promise: Promise<unknown>): Promise<string> => {
          try {
            await promise;
          } catch (err) {
            assert.ok(err instanceof InvalidArgument, String(err));
            return err.field;
          }
          assert.fail('expected InvalidArgument');
        };
        assert.equal(
          await field(store.append('s', 0, [noted(1), { type: 'Nope', data: {} }])),
          'events[1].type',
        );
        assert.equal(
          await field(store.append('s', 0, [{ type: 'Noted', data: { n: 'x' } }])),
          'events[0].data.n',
        );
        assert.equal(await field(store.append('s', 0, [])), 'events');
        assert.equal(await field(store.append('', 0, [noted(1)])), 'stream');
        assert.equal(await field(store.append('a\0b', 0, [noted(1)])), 'stream');
        assert.equal(await field(store.append('s', -1, [noted(1)])), 'expectedVersion');
        assert.equal(store.lastSeq(), 0);
      } finally {
        await store.close();
      }
    });

    it("stores the validator's output, not the caller's object", async () => {
      const store = await candidate.open();
      try {
        const data = { n: 5, extra: 'dropped by the validator' };
        const result = await store.append('s', 0, [{ type: 'Noted', data }]);
        data.n = 6;
        assert.deepEqual(result.events[0]!.data, { n: 5 });
        const [read] = await collect(store.readStream('s'));
        assert.deepEqual(read!.data, { n: 5 });
      } finally {
        await store.close();
      }
    });

    it('reads a stream from a version and the whole log from a seq, in order', async () => {
      const store = await candidate.open();
      try {
        await store.append('a', 0, [noted(1), noted(2)]);
        await store.append('b', 0, [noted(3)]);
        await store.append('a', 2, [noted(4)]);
        const a = await collect(store.readStream('a'));
        assert.deepEqual(
          a.map((e) => [e.version, e.seq, (e.data as { n: number }).n]),
          [
            [1, 1, 1],
            [2, 2, 2],
            [3, 4, 4],
          ],
        );
        assert.deepEqual(
          (await collect(store.readStream('a', 2))).map((e) => e.version),
          [2, 3],
        );
        assert.deepEqual(await collect(store.readStream('missing')), []);
        assert.deepEqual(
          (await collect(store.readAll())).map((e) => [e.seq, e.stream]),
          [
            [1, 'a'],
            [2, 'a'],
            [3, 'b'],
            [4, 'a'],
          ],
        );
        assert.deepEqual(
          (await collect(store.readAll(3))).map((e) => e.seq),
          [3, 4],
        );
        assert.deepEqual(await collect(store.readAll(99)), []);
      } finally {
        await store.close();
      }
    });

    it('lists streams with their versions, filtered by prefix, in name order', async () => {
      const store = await candidate.open();
      try {
        await store.append('sandbox-b', 0, [noted(1)]);
        await store.append('container-b-1', 0, [noted(1), noted(2)]);
        await store.append('sandbox-a', 0, [noted(1), noted(2), noted(3)]);
        assert.deepEqual(await store.listStreams('sandbox-'), [
          { stream: 'sandbox-a', version: 3 },
          { stream: 'sandbox-b', version: 1 },
        ]);
        assert.deepEqual(
          (await store.listStreams()).map((s) => s.stream),
          ['container-b-1', 'sandbox-a', 'sandbox-b'],
        );
        assert.deepEqual(await store.listStreams('exec-'), []);
      } finally {
        await store.close();
      }
    });

    it('saves and loads snapshots as independent copies and refuses one past the stream version', async () => {
      const store = await candidate.open();
      try {
        await store.append('s', 0, [noted(1), noted(2)]);
        assert.equal(await store.loadSnapshot('s'), undefined);
        const state = { value: 'running', context: { n: 2 } };
        await store.saveSnapshot({ stream: 's', version: 2, state });
        state.context.n = 99;
        assert.deepEqual(await store.loadSnapshot('s'), {
          stream: 's',
          version: 2,
          state: { value: 'running', context: { n: 2 } },
        });
        await assert.rejects(store.saveSnapshot({ stream: 's', version: 3, state }), InvalidArgument);
        await store.saveSnapshot({ stream: 's', version: 1, state: 'older' });
        assert.equal((await store.loadSnapshot('s'))?.state, 'older');
        await store.append('t', 0, [noted(1)]);
        await store.saveSnapshot({ stream: 't', version: 1, state: 'only' });
        const all = await store.loadSnapshots();
        assert.deepEqual([...all.keys()].sort(), ['s', 't']);
        assert.deepEqual(all.get('t'), { stream: 't', version: 1, state: 'only' });
      } finally {
        await store.close();
      }
    });

    it('subscribes from a seq: stored events first, then live ones, each once and in order', async () => {
      const store = await candidate.open();
      try {
        await store.append('a', 0, [noted(1), noted(2)]);
        await store.append('b', 0, [noted(3)]);
        const received = firstValueFrom(store.subscribe(2).pipe(take(4), toArray()));
        await store.append('a', 2, [noted(4)]);
        await store.append('b', 1, [noted(5)]);
        const events = await received;
        assert.deepEqual(
          events.map((e) => e.seq),
          [2, 3, 4, 5],
        );
        assert.deepEqual(
          events.map((e) => (e.data as { n: number }).n),
          [2, 3, 4, 5],
        );
      } finally {
        await store.close();
      }
    });

    it('verifies a healthy log as ok with its counts', async () => {
      const store = await candidate.open();
      try {
        await store.append('a', 0, [noted(1), noted(2)]);
        await store.append('b', 0, [noted(3)]);
        const report = await store.verify();
        assert.equal(report.ok, true);
        assert.deepEqual(report.problems, []);
        assert.equal(report.events, 3);
        assert.equal(report.streams, 2);
        assert.equal(report.lastSeq, 3);
      } finally {
        await store.close();
      }
    });
  });
}

describe('stores without an explicit registry', () => {
  it("validate against the catalogue's eventRegistry", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandboxd-store-contract-'));
    tempDirs.push(dir);
    const stores: EventStore[] = [createMemoryEventStore()];
    if (openLevel) stores.push(await (openLevel as (dir: string) => Promise<EventStore>)(dir));
    for (const store of stores) {
      try {
        const result = await store.append('exec-s-c-e', 0, [{ type: 'ExecStarted', data: { pid: 42 } }]);
        assert.deepEqual(result.events[0]!.data, { pid: 42 });
        await assert.rejects(store.append('exec-s-c-e', 1, [noted(1)]), InvalidArgument);
        await assert.rejects(
          store.append('exec-s-c-e', 1, [{ type: 'ExecStarted', data: { pid: -1 } }]),
          InvalidArgument,
        );
      } finally {
        await store.close();
      }
    }
  });
});

describe('readAllBatches', () => {
  for (const candidate of candidates) {
    it(`gives the same events as readAll in the ${candidate.name}`, async () => {
      const store = await candidate.open();
      try {
        for (let i = 0; i < 30; i++) {
          await store.append(
            `s-${i % 4}`,
            'any',
            Array.from({ length: 97 }, (_, k) => noted(i * 100 + k)),
          );
        }
        assert.ok(store.readAllBatches, 'the store provides readAllBatches');
        for (const from of [1, 500, 2910, 5000]) {
          const batched: EventEnvelope[] = [];
          for await (const batch of store.readAllBatches(from)) batched.push(...batch);
          assert.deepEqual(batched, await collect(store.readAll(from)));
        }
      } finally {
        await store.close();
      }
    });
  }
});
