// The sandbox machine and the netns wiring facts: which states take a repair (a VM that runs) or a release
// (a sandbox that runs no VM), and that neither changes the context nor names an effect.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { can, type SandboxMachineEvent, step } from '../src/machines/index.js';
import { bootEvents, foldSandbox } from './support/sandbox-events.js';

const boot = bootEvents({ network: { mode: 'netns', path: '/run/netns/x' } });
const fold = (events: SandboxMachineEvent[]) => foldSandbox(events).snapshot;
const change = { op: 'add' as const, kind: 'filter' as const, dev: 'eth0', to: 'sbx01234567t0' };
const repaired: SandboxMachineEvent = {
  type: 'SandboxNetworkRepaired',
  data: { path: '/run/netns/x', changes: [change] },
};
const released: SandboxMachineEvent = {
  type: 'SandboxNetworkReleased',
  data: { path: '/run/netns/x', reason: 'sandbox lost', changes: [{ ...change, op: 'del' as const }] },
};

describe('sandbox machine: netns wiring reconciled by recovery', () => {
  it('takes a repair while the VM runs or is paused, and a release only once it runs none', () => {
    const running = fold(boot);
    const paused = fold([
      ...boot,
      { type: 'SandboxPauseRequested', data: {} },
      { type: 'SandboxPaused', data: {} },
    ]);
    const lost = fold([...boot, { type: 'SandboxLost', data: { reason: 'gone' } }]);
    const stopped = fold([
      ...boot,
      { type: 'SandboxStopRequested', data: {} },
      { type: 'SandboxStopped', data: {} },
    ]);
    const created = fold(boot.slice(0, 1));
    for (const s of [running, paused]) {
      assert.equal(can('sandbox', s, repaired), true, String(s.value));
      assert.equal(can('sandbox', s, released), false, String(s.value));
    }
    for (const s of [lost, stopped, created]) {
      assert.equal(can('sandbox', s, released), true, String(s.value));
      assert.equal(can('sandbox', s, repaired), false, String(s.value));
    }
  });

  it('leaves the state and context as they were and names no effect', () => {
    const running = fold(boot);
    const r = step('sandbox', running, repaired);
    assert.deepEqual(r.effects, []);
    assert.equal(r.snapshot.value, 'running');
    assert.deepEqual(r.snapshot.context, running.context);
    const lost = fold([...boot, { type: 'SandboxLost', data: { reason: 'gone' } }]);
    const l = step('sandbox', lost, released);
    assert.deepEqual(l.effects, []);
    assert.equal(l.snapshot.value, 'lost');
    assert.deepEqual(l.snapshot.context, lost.context);
  });
});
