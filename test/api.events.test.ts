// events.read pages through the log in seq order with stream, type and time filters; events.streams lists streams.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { ApiClient } from '../src/api/index.js';
import type { EventEnvelope } from '../src/events/index.js';
import { type Harness, withApi } from './support/api-harness.js';

type Page = { events: EventEnvelope[]; nextSeq: number; lastSeq: number };

describe('api events.read', () => {
  let h: Harness;
  let c: ApiClient;
  withApi((api) => {
    ({ h, c } = api);
  });
  before(async () => {
    for (const id of ['r1', 'r2', 'r3']) {
      await c.call('sandbox.create', { id });
      await c.call('sandbox.start', { id });
    }
    await c.call('sandbox.stop', { id: 'r2' });
    await h.runtime.idle();
  });

  /** What the log holds, read from the store itself (the runtime decides which events a lifecycle takes). */
  const stored = async (stream?: string) =>
    (await h.events()).filter((e) => stream === undefined || e.stream === stream);

  it('reads every event in seq order, in pages that continue from nextSeq', async () => {
    const all: EventEnvelope[] = [];
    let fromSeq = 1;
    for (;;) {
      const page = await c.call<Page>('events.read', { fromSeq, limit: 2 });
      all.push(...page.events);
      if (page.events.length === 0) break;
      fromSeq = page.nextSeq;
    }
    const expected = await stored();
    assert.ok(expected.length >= 7, 'three starts and a stop');
    assert.deepEqual(
      all.map((e) => e.seq),
      expected.map((_, i) => i + 1),
    );
    assert.deepEqual(all, expected);
  });

  it('filters by stream and by type', async () => {
    const byStream = await c.call<Page>('events.read', { stream: 'sandbox-r2' });
    assert.deepEqual(byStream.events, await stored('sandbox-r2'));
    const types = byStream.events.map((e) => e.type);
    for (const t of ['SandboxCreated', 'SandboxStarted', 'SandboxStopped']) assert.ok(types.includes(t), t);
    const byType = await c.call<Page>('events.read', { types: ['SandboxStarted'] });
    assert.deepEqual(
      byType.events.map((e) => [e.stream, e.type]),
      ['sandbox-r1', 'sandbox-r2', 'sandbox-r3'].map((s) => [s, 'SandboxStarted']),
    );
  });

  it('filters by time: nothing is newer than the future, everything is newer than the past', async () => {
    const future = await c.call<Page>('events.read', { since: new Date(Date.now() + 60_000).toISOString() });
    assert.equal(future.events.length, 0);
    const past = await c.call<Page>('events.read', { since: '2000-01-01T00:00:00Z' });
    assert.equal(past.events.length, (await stored()).length);
  });

  it('lists streams with their versions', async () => {
    const streams = await c.call<{ stream: string; version: number }[]>('events.streams', {
      prefix: 'sandbox-',
    });
    const versions = await Promise.all(
      ['r1', 'r2', 'r3'].map(async (id) => [`sandbox-${id}`, (await stored(`sandbox-${id}`)).length]),
    );
    assert.deepEqual(streams.map((s) => [s.stream, s.version]).sort(), versions);
    assert.ok(versions[1]![1]! > versions[0]![1]!, 'the stopped sandbox has more events');
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
