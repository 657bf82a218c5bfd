// GuestNetworkUpdated in the sandbox machine: only a running VM takes it, the latest change per interface and route is kept, a new VM forgets them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { can, type SandboxMachineEvent, step } from '../src/machines/index.js';
import { bootEvents, foldSandbox, vmHandle as handle } from './support/sandbox-events.js';

const boot = bootEvents({ network: 'user' });

const changed = (data: Extract<SandboxMachineEvent, { type: 'GuestNetworkUpdated' }>['data']) =>
  ({ type: 'GuestNetworkUpdated', data }) as SandboxMachineEvent;

const fold = (events: SandboxMachineEvent[]) => foldSandbox(events).snapshot;

describe('sandbox machine: GuestNetworkUpdated', () => {
  it('keeps the latest change per interface and per route while running, naming no effect', () => {
    const running = fold(boot);
    assert.equal(can('sandbox', running, changed({ routes: [] })), true);
    let s = running;
    for (const e of [
      changed({ interface: { name: 'eth0', addresses: ['10.0.2.15/24'], mtu: 1500 } }),
      changed({ routes: [{ dest: '10.9.0.0/16', gateway: '10.0.2.2' }] }),
      changed({ interface: { name: 'eth0', addresses: [], mtu: 1400 } }),
      changed({
        routes: [
          { dest: '10.9.0.0/16', gateway: '10.0.2.3' },
          { dest: 'default', gateway: '10.0.2.2' },
        ],
      }),
    ]) {
      const r = step('sandbox', s, e);
      assert.deepEqual(r.effects, []);
      assert.equal(r.snapshot.value, 'running');
      s = r.snapshot;
    }
    assert.deepEqual(s.context.guestNetwork, {
      interfaces: { eth0: { name: 'eth0', addresses: [], mtu: 1400 } },
      routes: {
        '10.9.0.0/16': { dest: '10.9.0.0/16', gateway: '10.0.2.3' },
        default: { dest: 'default', gateway: '10.0.2.2' },
      },
    });
  });

  it('is refused before the sandbox runs and while it is paused', () => {
    const created = fold(boot.slice(0, 1));
    assert.equal(can('sandbox', created, changed({ routes: [] })), false);
    const paused = fold([
      ...boot,
      { type: 'SandboxPauseRequested', data: {} },
      { type: 'SandboxPaused', data: {} },
    ]);
    assert.equal(can('sandbox', paused, changed({ routes: [] })), false);
  });

  it('is forgotten by the next VM: a restarted sandbox boots with its configured network', () => {
    const s = fold([
      ...boot,
      changed({ routes: [{ dest: 'default', gateway: '10.0.2.9' }] }),
      { type: 'SandboxStopRequested', data: {} },
      { type: 'SandboxStopped', data: {} },
      { type: 'SandboxStartRequested', data: {} },
      { type: 'VmLaunched', data: { handle } },
    ]);
    assert.equal(s.context.guestNetwork, undefined);
  });

  it('leaves the context of a log without network changes as it was (snapshots stay comparable)', () => {
    assert.equal('guestNetwork' in fold(boot).context, false);
  });
});
