// The lifecycle machines, stepped without running anything: legal moves, named effects, guards, persistence.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { initialTransition, transition } from 'xstate';
import type { EventEnvelope } from '../src/events/index.js';
import { eventRegistry } from '../src/events/index.js';
import {
  can,
  checkTransitions,
  containerMachine,
  initialSnapshot,
  persistSnapshot,
  replayEach,
  replayStream,
  restoreSnapshot,
  sandboxMachine,
  stateOf,
  step,
} from '../src/machines/index.js';
import { bootEvents, foldSandbox, vmHandle as handle } from './support/sandbox-events.js';

const boot = bootEvents({ vcpus: 1 }, '2026-01-01T00:00:00Z');
const fold = foldSandbox;

let seq = 0;
function envelopes(stream: string, events: { type: string; data: unknown }[]): EventEnvelope[] {
  return events.map((e, i) => ({
    seq: ++seq,
    stream,
    version: i + 1,
    type: e.type,
    schema: 1,
    id: `id${seq}`,
    at: '2026-01-01T00:00:00Z',
    data: e.data,
  }));
}

describe('sandbox machine', () => {
  it('starts absent and is created by SandboxCreated', () => {
    const [s0, actions] = initialTransition(sandboxMachine);
    assert.equal(s0.value, 'absent');
    assert.deepEqual(actions, []);
    const [s1] = transition(sandboxMachine, s0, boot[0]!);
    assert.equal(s1.value, 'created');
    assert.equal(s1.context.createdAt, '2026-01-01T00:00:00Z');
  });

  it('names each boot effect on entering its step, and runs none of them', () => {
    const { snapshot, effects } = fold(boot);
    assert.equal(snapshot.value, 'running');
    assert.deepEqual(effects, ['launchVm', 'connectAgent', 'initGuest']);
    assert.deepEqual(snapshot.context.handle, handle);
  });

  it('gives the same effects through xstate.transition as through step', () => {
    let s = initialTransition(sandboxMachine)[0];
    const names: string[] = [];
    for (const e of boot) {
      const [next, actions] = transition(sandboxMachine, s, e);
      names.push(...actions.map((a) => a.type));
      s = next;
    }
    assert.deepEqual(names, ['launchVm', 'connectAgent', 'initGuest']);
    assert.deepEqual(s.value, fold(boot).snapshot.value);
  });

  it('keeps boot steps explicit so recovery can tell which one was in flight', () => {
    assert.deepEqual(fold(boot.slice(0, 2)).snapshot.value, { starting: 'launching' });
    assert.deepEqual(fold(boot.slice(0, 3)).snapshot.value, { starting: 'connecting' });
    assert.equal(stateOf(fold(boot.slice(0, 4)).snapshot), 'starting');
  });

  it('allows delete only when nothing runs, unless forced (as the seeds do)', () => {
    const running = fold(boot).snapshot;
    assert.equal(can('sandbox', running, { type: 'SandboxDeleteRequested', data: { force: false } }), false);
    assert.equal(can('sandbox', running, { type: 'SandboxDeleteRequested', data: { force: true } }), true);
    const created = fold(boot.slice(0, 1)).snapshot;
    assert.equal(can('sandbox', created, { type: 'SandboxDeleteRequested', data: { force: false } }), true);
  });

  it('refuses pause before running and resume while running', () => {
    const created = fold(boot.slice(0, 1)).snapshot;
    assert.equal(can('sandbox', created, { type: 'SandboxPauseRequested', data: {} }), false);
    const running = fold(boot).snapshot;
    assert.equal(can('sandbox', running, { type: 'SandboxResumeRequested', data: {} }), false);
    assert.equal(can('sandbox', running, { type: 'SandboxPauseRequested', data: {} }), true);
  });

  it('ignores VmExited while stopping: the stop effect reports the outcome', () => {
    const stopping = fold([...boot, { type: 'SandboxStopRequested', data: {} }]);
    assert.equal(stopping.snapshot.value, 'stopping');
    assert.deepEqual(stopping.effects.at(-1), 'stopVm');
    assert.equal(can('sandbox', stopping.snapshot, { type: 'VmExited', data: { reason: 'x' } }), false);
  });

  it('goes lost when the VM exits unasked, keeping why', () => {
    const { snapshot } = fold([...boot, { type: 'VmExited', data: { reason: 'panic' } }]);
    assert.equal(snapshot.value, 'lost');
    assert.equal(snapshot.context.lostReason, 'panic');
    assert.equal(snapshot.context.handle, undefined);
  });

  it('releases the VM when the start fails', () => {
    const error = { step: 'connectAgent', kind: 'Timeout', message: 'connectAgent timed out' };
    const r = fold([...boot.slice(0, 3), { type: 'SandboxStartFailed', data: { error } }]);
    assert.equal(r.snapshot.value, 'failed');
    assert.equal(r.effects.at(-1), 'releaseVm');
    assert.deepEqual(r.snapshot.context.error, error);
  });

  it('starts again from failed and from lost (a new VM), clearing why it ended', () => {
    const error = { step: 'connectAgent', kind: 'Timeout', message: 'connectAgent timed out' };
    const failed = fold([...boot.slice(0, 3), { type: 'SandboxStartFailed', data: { error } }]).snapshot;
    const lost = fold([...boot, { type: 'VmExited', data: { reason: 'panic' } }]).snapshot;
    for (const ended of [failed, lost]) {
      const r = step('sandbox', ended, { type: 'SandboxStartRequested', data: {} });
      assert.deepEqual(r.snapshot.value, { starting: 'launching' });
      assert.deepEqual(r.effects, ['launchVm']);
      assert.equal(r.snapshot.context.error, undefined);
      assert.equal(r.snapshot.context.lostReason, undefined);
    }
  });
});

describe('container machine', () => {
  const request = {
    type: 'ContainerCreateRequested',
    data: { sandboxId: 'a', containerId: 'c', bundle: '/b' },
  };
  it('keeps an OOM that arrives after the exit', () => {
    let s = initialSnapshot('container');
    for (const e of [
      request,
      { type: 'ContainerCreated', data: { pid: 4 } },
      { type: 'ContainerStartRequested', data: {} },
      { type: 'ContainerStarted', data: {} },
      { type: 'ContainerExited', data: { exitCode: 137, signal: 'SIGKILL', oomKilled: false } },
      { type: 'ContainerOomKilled', data: {} },
    ]) {
      s = step('container', s, e as never).snapshot;
    }
    assert.equal(s.value, 'stopped');
    assert.deepEqual(s.context.exit, { exitCode: 137, signal: 'SIGKILL', oomKilled: true });
  });

  it('refuses start from stopped and delete from running', () => {
    const [s0] = initialTransition(containerMachine);
    const [created] = transition(containerMachine, s0, request as never);
    assert.equal(created.value, 'creating');
    assert.equal(can('container', created, { type: 'ContainerStartRequested', data: {} }), false);
  });
});

describe('replay', () => {
  const events = envelopes('sandbox-a', boot);

  it('is deterministic: replaying the same log twice gives identical snapshots', () => {
    const one = replayStream('sandbox-a', events);
    const two = replayStream('sandbox-a', events);
    assert.deepEqual(
      persistSnapshot('sandbox', one.snapshot as never),
      persistSnapshot('sandbox', two.snapshot as never),
    );
    assert.equal(one.state, 'running');
    assert.equal(one.version, 5);
  });

  it('persist → JSON → restore → persist yields the same value, for every prefix of the log', () => {
    for (let n = 1; n <= events.length; n++) {
      const { snapshot } = replayStream('sandbox-a', events.slice(0, n));
      const persisted = persistSnapshot('sandbox', snapshot as never);
      const restored = restoreSnapshot('sandbox', JSON.parse(JSON.stringify(persisted)));
      assert.deepEqual(persistSnapshot('sandbox', restored), persisted);
      // A restored snapshot keeps stepping exactly like the original.
      const next = { type: 'SandboxStopRequested', data: {} } as const;
      assert.equal(can('sandbox', restored, next), can('sandbox', snapshot as never, next));
    }
  });

  it('restoring runs no entry effect again', () => {
    const { snapshot } = replayStream('sandbox-a', events.slice(0, 3));
    const restored = restoreSnapshot('sandbox', persistSnapshot('sandbox', snapshot as never));
    assert.deepEqual(restored.value, { starting: 'connecting' });
    const r = step('sandbox', restored, { type: 'AgentConnected', data: { agentVersion: '1' } });
    assert.deepEqual(r.effects, ['initGuest']);
  });

  it('replayEach gives the state after every event', () => {
    const states = [...replayEach(events)].map((r) => [r.event.type, r.state, r.allowed]);
    assert.deepEqual(states, [
      ['SandboxCreated', 'created', true],
      ['SandboxStartRequested', 'starting', true],
      ['VmLaunched', 'starting', true],
      ['AgentConnected', 'starting', true],
      ['SandboxStarted', 'running', true],
    ]);
  });

  it('starts a clone only once its identity is its own, and refreshes only a clone', () => {
    const restored = {
      type: 'SandboxRestored',
      data: { templateId: '0123456789abcdef', imageVersion: 'v', launchMs: 1, restoreMs: 1 },
    };
    const refreshed = { type: 'SandboxIdentityRefreshed', data: { steps: [{ step: 'reseed', ms: 1 }] } };
    const [created, requested, launched, connected, started] = boot.map((e) => ({
      type: e.type,
      data: e.data,
    }));
    const clone = (id: string, events: { type: string; data: unknown }[]) =>
      envelopes(
        `sandbox-${id}`,
        events.map((e) => (e.type === 'SandboxCreated' ? { ...e, data: { sandboxId: id, config: {} } } : e)),
      );
    // A clone whose workload would run on the template's randomness and clock: verify names it.
    const stale = clone('stale', [created!, requested!, restored, launched!, connected!, started!]);
    assert.deepEqual(
      checkTransitions(stale).map((p) => [p.version, p.type, p.state]),
      [[6, 'SandboxStarted', 'starting']],
    );
    const fresh = clone('fresh', [
      created!,
      requested!,
      restored,
      launched!,
      connected!,
      refreshed,
      started!,
    ]);
    assert.deepEqual(checkTransitions(fresh), []);
    const cold = clone('cold', [created!, requested!, launched!, connected!, refreshed, started!]);
    assert.deepEqual(
      checkTransitions(cold).map((p) => [p.version, p.type]),
      [[5, 'SandboxIdentityRefreshed']],
    );
  });

  it('checkTransitions names the events the machine would refuse', () => {
    const bad = envelopes('sandbox-b', [
      { type: 'SandboxCreated', data: { sandboxId: 'b', config: {} } },
      { type: 'SandboxStarted', data: {} },
      { type: 'ContainerStarted', data: {} },
      { type: 'NoSuchEvent', data: {} },
    ]);
    const problems = checkTransitions([...events, ...bad]);
    assert.deepEqual(
      problems.map((p) => [p.version, p.type, p.state]),
      [
        [2, 'SandboxStarted', 'created'],
        [3, 'ContainerStarted', 'created'],
        [4, 'NoSuchEvent', 'created'],
      ],
    );
  });
});

describe('event catalogue', () => {
  it('validates data and names the bad field', () => {
    assert.throws(() => eventRegistry.validate('VmLaunched', { handle: { ...handle, pid: -1 } }), {
      kind: 'InvalidArgument',
      field: 'data.handle.pid',
    });
  });

  it('upcasts a schema-1 ContainerExited (no oomKilled) to the current schema', () => {
    assert.equal(eventRegistry.currentSchema('ContainerExited'), 2);
    const lifted = eventRegistry.upcast('ContainerExited', 1, { exitCode: 1 });
    assert.deepEqual(lifted, { exitCode: 1, oomKilled: false });
    assert.deepEqual(eventRegistry.validate('ContainerExited', lifted), { exitCode: 1, oomKilled: false });
  });

  it('holds every event type the machines consume', () => {
    const types = new Set(eventRegistry.types());
    for (const t of [
      'SandboxCreated',
      'SandboxReattached',
      'SandboxLost',
      'ContainerExitedWhileDown',
      'ProcessExitedWhileDaemonDown',
    ]) {
      assert.ok(types.has(t), t);
    }
  });
});
