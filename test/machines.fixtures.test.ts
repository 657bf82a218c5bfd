// Logs written by older versions stay readable: upcast, replayed, they give the snapshots recorded with them.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { type EventEnvelope, eventRegistry } from '../src/events/index.js';
import { checkTransitions, persistSnapshot, replayStream } from '../src/machines/index.js';

interface Fixture {
  readonly written: string;
  readonly events: EventEnvelope[];
  readonly expected: Record<string, { state: string; version: number; snapshot: unknown }>;
}

// JSON fixtures are not compiled: read them from the source tree (dist/test/x.js → test/support/logs/).
const load = (name: string): Fixture =>
  JSON.parse(readFileSync(new URL(`../../test/support/logs/${name}`, import.meta.url), 'utf8')) as Fixture;

/** What the store does on read: lift old data to the current schema, then validate it. */
const upcast = (e: EventEnvelope): EventEnvelope => {
  const data = eventRegistry.validate(e.type, eventRegistry.upcast(e.type, e.schema, e.data));
  return { ...e, schema: eventRegistry.currentSchema(e.type), data };
};

describe('old logs as fixtures', () => {
  const fixture = load('v1-lifecycle.json');

  it('holds events at an old schema (the fixture really exercises an upcaster)', () => {
    assert.ok(fixture.events.some((e) => e.type === 'ContainerExited' && e.schema === 1));
  });

  it('replays a v1 log to the snapshots recorded with it', () => {
    const events = fixture.events.map(upcast);
    assert.deepEqual(checkTransitions(events), []);
    const streams = [...new Set(events.map((e) => e.stream))];
    assert.deepEqual(streams.sort(), Object.keys(fixture.expected).sort());
    for (const stream of streams) {
      const r = replayStream(
        stream,
        events.filter((e) => e.stream === stream),
      );
      const want = fixture.expected[stream]!;
      assert.equal(r.state, want.state, stream);
      assert.equal(r.version, want.version, stream);
      const got = persistSnapshot(r.kind, r.snapshot as never) as { context: Record<string, unknown> };
      // Context fields added after the fixture was written: each equals the time of the event that sets it;
      // everything the v1 snapshot had must be as it was.
      const { startedAt, exitedAt, ...context } = got.context;
      const at = (type: string) => events.findLast((e) => e.stream === stream && e.type === type)?.at;
      if (r.kind === 'container') {
        assert.equal(startedAt, at('ContainerStarted'), `${stream} startedAt`);
        assert.equal(exitedAt, at('ContainerExited') ?? at('ContainerLost'), `${stream} exitedAt`);
      } else {
        assert.equal(startedAt ?? exitedAt, undefined);
      }
      assert.deepEqual({ ...got, context }, want.snapshot, stream);
    }
  });

  it('fails when an old event is read without its upcaster', () => {
    const raw = fixture.events.find((e) => e.type === 'ContainerExited' && e.schema === 1)!;
    assert.throws(() => eventRegistry.validate(raw.type, raw.data), {
      kind: 'InvalidArgument',
      field: 'data.oomKilled',
    });
  });
});
