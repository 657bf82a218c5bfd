// Logs written before correlation ids were recorded still explain: reasons, pairs and who asked, inferred.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { type EventEnvelope, eventRegistry } from '../src/events/index.js';
import { explainEntity } from '../src/explain/index.js';

const fixture = JSON.parse(
  readFileSync(new URL('../../test/support/logs/v1-lifecycle.json', import.meta.url), 'utf8'),
) as { events: EventEnvelope[] };

/** What the store does on read: lift old data to the current schema. */
const events = fixture.events.map((e) => ({
  ...e,
  schema: eventRegistry.currentSchema(e.type),
  data: eventRegistry.validate(e.type, eventRegistry.upcast(e.type, e.schema, e.data)),
}));

const explain = (stream: string) =>
  explainEntity(stream, new Map([[stream, events.filter((e) => e.stream === stream)]]));

describe('old logs explain', () => {
  it('holds no correlation ids (the fixture predates them)', () => {
    assert.ok(events.every((e) => e.correlationId === undefined));
  });

  it('gives why each entity ended, from an upcast v1 log', () => {
    assert.equal(explain('sandbox-web').ended, 'stopped by request');
    assert.equal(explain('container-web-hog').ended, 'OOM-killed (SIGKILL, exit 137)');
    assert.equal(explain('container-web-nginx').ended, 'lost: sandbox stopped');
    assert.equal(explain('exec-web-nginx-sh').ended, 'exited 0');
    assert.equal(explain('sandbox-gone').ended, 'VM lost: QEMU: qemu killed; then deleted by request');
  });

  it('pairs intents with outcomes by causation and the steps add up to the operation', () => {
    const start = explain('sandbox-web').lives[0]!.operations[0]!;
    assert.equal(start.intent, 'SandboxStartRequested');
    assert.deepEqual(
      start.steps.map((s) => [s.name, s.ms]),
      [
        ['launch', 38],
        ['agent connect', 12],
        ['guest init', 1],
      ],
    );
    assert.equal(start.totalMs, 51);
    assert.deepEqual(
      start.steps.map((s) => s.causeSeq),
      [2, 3, 4],
    );
    assert.equal(start.settled, 'effect');
  });

  it('infers who asked where the log does not say', () => {
    const web = explain('sandbox-web').lives[0]!;
    assert.equal(web.timeline.find((e) => e.type === 'SandboxStopRequested')!.by, 'api');
    assert.equal(web.timeline.find((e) => e.type === 'VmLaunched')!.by, 'effect');
    const gone = explain('sandbox-gone').lives[0]!;
    assert.equal(gone.timeline.find((e) => e.type === 'VmExited')!.by, 'supervision (QEMU)');
    const nginx = explain('container-web-nginx').lives[0]!;
    assert.equal(nginx.timeline.at(-1)!.by, 'supervision (parent ended)');
  });
});
