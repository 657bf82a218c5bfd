// The transition watch: durations observed when an operation ends, stuck intents past the effect deadline, reported once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EventEnvelope } from '../src/events/index.js';
import { deadlinesFrom, TransitionWatch } from '../src/explain/index.js';

let seq = 0;
const event = (type: string, at: number, extra: Partial<EventEnvelope> = {}): EventEnvelope => {
  seq += 1;
  return {
    seq,
    stream: 'sandbox-w',
    version: seq,
    type,
    schema: 1,
    id: `id${seq}`,
    at: new Date(at).toISOString(),
    data: {},
    ...extra,
  };
};

describe('transition watch', () => {
  it('observes a start from intent to outcome and lists a stuck stop once past its deadline', () => {
    const watch = new TransitionWatch({
      deadline: deadlinesFrom({ launchVm: 1000, stopVm: 500, call: 100 }),
    });
    const t = 1_700_000_000_000;
    const feed = (e: EventEnvelope, from: string, to: string, effects: string[] = []) =>
      watch.feed('sandbox-w', 'sandbox', { event: e, from, to, effects });
    feed(event('SandboxCreated', t), 'absent', 'created');
    const req = event('SandboxStartRequested', t + 10);
    feed(req, 'created', 'starting.launching', ['launchVm']);
    assert.equal(watch.inFlight, 1);
    assert.deepEqual(watch.stuck(t + 900), [], 'within the launch deadline');
    assert.equal(watch.stuck(t + 1100)[0]?.effect, 'launchVm');
    const launched = event('VmLaunched', t + 210, { causationId: req.id });
    feed(launched, 'starting.launching', 'starting.connecting', ['connectAgent']);
    feed(
      event('AgentConnected', t + 260, { causationId: launched.id }),
      'starting.connecting',
      'starting.initialising',
      ['initGuest'],
    );
    const closed = feed(event('SandboxStarted', t + 310), 'starting.initialising', 'running');
    assert.equal(closed?.totalMs, 300);
    assert.deepEqual(
      closed?.steps.map((s) => [s.name, s.ms]),
      [
        ['launch', 200],
        ['agent connect', 50],
        ['guest init', 50],
      ],
    );
    assert.equal(watch.inFlight, 0);
    const [series] = watch.durations.snapshot();
    assert.deepEqual(series?.labels, { entity: 'sandbox', from: 'created', to: 'running' });
    assert.equal(series?.count, 1);
    assert.equal(series?.sum, 0.3);
    assert.equal(series?.buckets[watch.durations.bounds.indexOf(0.25)], 0, '0.3 s is above the 0.25 bucket');
    assert.equal(series?.buckets[watch.durations.bounds.indexOf(0.5)], 1);

    // A stop asking a 1 s grace gets 500 + 2 × 1000 ms, as the runtime's deadline does.
    feed(event('SandboxStopRequested', t + 1000, { data: { timeoutMs: 1000 } }), 'running', 'stopping', [
      'stopVm',
    ]);
    assert.deepEqual(watch.newlyStuck(t + 3400), []);
    const stuck = watch.newlyStuck(t + 3600);
    assert.deepEqual(
      stuck.map((s) => [s.intent, s.step, s.deadlineMs, s.waitedMs]),
      [['SandboxStopRequested', 'stopping', 2500, 2600]],
    );
    assert.deepEqual(watch.newlyStuck(t + 9000), [], 'reported once');
    assert.equal(watch.stuckTotal, 1);
    assert.equal(watch.stuck(t + 9000).length, 1, 'still listed while stuck');
  });
});
