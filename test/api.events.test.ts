// events.read pages through the log in seq order with stream, type and time filters; events.streams lists streams.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ApiClient, connectApi } from '../src/api/index.js';
import type { EventEnvelope } from '../src/events/index.js';
import { type Harness, startHarness } from './support/api-harness.js';

type Page = { events: EventEnvelope[]; nextSeq: number; lastSeq: number };

describe('api events.read', () => {
  let h: Harness;
  let c: ApiClient;
  before(async () => {
    h = await startHarness();
    c = await connectApi(h.socketPath);
    for (const id of ['r1', 'r2', 'r3']) {
      await c.call('sandbox.create', { id });
      await c.call('sandbox.start', { id });
    }
    await c.call('sandbox.stop', { id: 'r2' });
  });
  after(async () => {
    c.close();
    await h.close();
  });

  it('reads every event in seq order, in pages that continue from nextSeq', async () => {
    const all: EventEnvelope[] = [];
    let fromSeq = 1;
    for (;;) {
      const page = await c.call<Page>('events.read', { fromSeq, limit: 2 });
      all.push(...page.events);
      if (page.events.length === 0) break;
      fromSeq = page.nextSeq;
    }
    assert.deepEqual(
      all.map((e) => e.seq),
      [1, 2, 3, 4, 5, 6, 7],
    );
  });

  it('filters by stream and by type', async () => {
    const byStream = await c.call<Page>('events.read', { stream: 'sandbox-r2' });
    assert.deepEqual(
      byStream.events.map((e) => e.type),
      ['SandboxCreated', 'SandboxStarted', 'SandboxStopped'],
    );
    const byType = await c.call<Page>('events.read', { types: ['SandboxStarted'] });
    assert.deepEqual(
      byType.events.map((e) => e.stream),
      ['sandbox-r1', 'sandbox-r2', 'sandbox-r3'],
    );
  });

  it('filters by time: nothing is newer than the future, everything is newer than the past', async () => {
    const future = await c.call<Page>('events.read', { since: new Date(Date.now() + 60_000).toISOString() });
    assert.equal(future.events.length, 0);
    const past = await c.call<Page>('events.read', { since: '2000-01-01T00:00:00Z' });
    assert.equal(past.events.length, 7);
  });

  it('lists streams with their versions', async () => {
    const streams = await c.call<{ stream: string; version: number }[]>('events.streams', {
      prefix: 'sandbox-',
    });
    assert.deepEqual(streams.map((s) => [s.stream, s.version]).sort(), [
      ['sandbox-r1', 2],
      ['sandbox-r2', 3],
      ['sandbox-r3', 2],
    ]);
  });

  it('refuses a bad time and a limit out of range, naming the field', async () => {
    await assert.rejects(
      c.call('events.read', { since: 'yesterday-ish' }),
      (e: { data: { field: string } }) => e.data.field === 'since',
    );
    await assert.rejects(
      c.call('events.read', { limit: 0 }),
      (e: { data: { field: string } }) => e.data.field === 'limit',
    );
  });
});
