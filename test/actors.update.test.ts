// container.update and guest.updateInterface/updateRoutes record their intent before the guest changes, then the outcome; a failure is an event too,
// and a restart that finds an intent without outcome applies it again (fake world, real runtime).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AgentError } from '../src/errors/index.js';
import { streamOf } from '../src/events/index.js';
import { checkTransitions } from '../src/machines/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';

const MiB = 1024 * 1024;

describe('container.update: intent first', () => {
  let h: Harness;
  const typesOf = async () =>
    (await h.events()).filter((e) => e.stream === streamOf.container('u', 'c')).map((e) => e.type);

  before(async () => {
    // The crash cases' dead daemon hangs on its severed ports until these deadlines (its late failure then finds
    // the log moved on and is refused); everything else takes no time in the fake world.
    h = await makeHarness({ timeouts: { updateContainer: 2_000, updateGuestNetwork: 2_000 } });
    await h.runtime.createSandbox('u', {});
    await h.runtime.startSandbox('u');
    await h.runtime.createContainer({ sandboxId: 'u', id: 'c', bundle: h.bundle });
    await h.runtime.startContainer('u', 'c');
  });
  after(async () => {
    await h.cleanup();
  });

  it('logs the request, then what the guest did', async () => {
    await h.runtime.updateContainer('u', 'c', { memoryLimitBytes: 64 * MiB });
    const logged = (await typesOf()).slice(-2);
    assert.deepEqual(logged, ['ContainerUpdateRequested', 'ContainerUpdated']);
    assert.deepEqual(h.world.vms.get('u')?.containers.get('c')?.resources, { memoryLimitBytes: 64 * MiB });
    const [request, outcome] = (await h.events()).slice(-2);
    assert.equal(outcome!.causationId, request!.id, 'the outcome names its intent');
    assert.match(request!.correlationId ?? '', /^api:container\.update/);
  });

  it('records a refusal of the guest as ContainerUpdateFailed and keeps the resources it had', async () => {
    h.world.failures.updateContainer = new AgentError('updateContainer', 'cgroup write failed');
    try {
      await assert.rejects(h.runtime.updateContainer('u', 'c', { memoryLimitBytes: 32 * MiB }), {
        kind: 'AgentError',
      });
    } finally {
      delete h.world.failures.updateContainer;
    }
    assert.deepEqual((await typesOf()).slice(-2), ['ContainerUpdateRequested', 'ContainerUpdateFailed']);
    assert.deepEqual(h.world.vms.get('u')?.containers.get('c')?.resources, { memoryLimitBytes: 64 * MiB });
    // The failure is history, not a lock: the next update goes ahead.
    await h.runtime.updateContainer('u', 'c', { memoryLimitBytes: 48 * MiB });
    assert.deepEqual(h.world.vms.get('u')?.containers.get('c')?.resources, { memoryLimitBytes: 48 * MiB });
  });

  it('applies an update whose outcome a restart never saw', async () => {
    // The daemon dies while the guest is being changed: the intent is in the log, the outcome is not.
    h.world.hangs.add('updateContainer');
    void h.runtime.updateContainer('u', 'c', { memoryLimitBytes: 96 * MiB }).catch(() => undefined);
    for (let i = 0; i < 200 && (await typesOf()).at(-1) !== 'ContainerUpdateRequested'; i++)
      await new Promise((r) => setTimeout(r, 5));
    assert.equal((await typesOf()).at(-1), 'ContainerUpdateRequested');
    // The daemon is dead: its ports answer nothing more, whatever the world does next.
    h.agent.sever();
    h.hypervisor.sever();
    h.world.hangs.delete('updateContainer');
    const rt2 = await h.restart();
    await rt2.idle();
    assert.deepEqual((await typesOf()).slice(-2), ['ContainerUpdateRequested', 'ContainerUpdated']);
    assert.deepEqual(h.world.vms.get('u')?.containers.get('c')?.resources, { memoryLimitBytes: 96 * MiB });
    assert.ok(
      rt2.recovery.settled.some((s) => s.stream === streamOf.container('u', 'c') && s.how === 'retried'),
      'recovery says it retried the update',
    );
    assert.deepEqual(checkTransitions(await h.events()), []);
  });

  it('changes the guest network the same way: intent, effect, outcome; a refusal is recorded', async () => {
    const sandboxTypes = async () =>
      (await h.events()).filter((e) => e.stream === streamOf.sandbox('u')).map((e) => e.type);
    const iface = { name: 'eth0', addresses: ['10.1.0.2/24'], up: true };
    const updated = await h.runtime.updateInterface('u', iface);
    assert.deepEqual(updated, iface, 'what the guest lists now');
    const table = await h.runtime.updateRoutes('u', [
      { dest: 'default', gateway: '10.1.0.1', device: 'eth0' },
    ]);
    assert.deepEqual(table, [{ dest: 'default', gateway: '10.1.0.1', device: 'eth0' }]);
    assert.deepEqual((await sandboxTypes()).slice(-4), [
      'GuestNetworkUpdateRequested',
      'GuestNetworkUpdated',
      'GuestNetworkUpdateRequested',
      'GuestNetworkUpdated',
    ]);
    h.world.failures.updateNetwork = new AgentError('updateInterface', 'no such device');
    try {
      await assert.rejects(h.runtime.updateInterface('u', { name: 'eth9', addresses: [] }), {
        kind: 'AgentError',
      });
    } finally {
      delete h.world.failures.updateNetwork;
    }
    assert.deepEqual((await sandboxTypes()).slice(-2), [
      'GuestNetworkUpdateRequested',
      'GuestNetworkUpdateFailed',
    ]);
    const view = h.runtime.getSandbox('u');
    assert.equal(view.error, undefined, 'a refused network change is not a sandbox failure');
    assert.deepEqual(Object.keys(view.guestNetwork?.interfaces ?? {}), ['eth0']);
    // After a restart that lost the outcome, recovery makes the change again.
    h.world.hangs.add('updateNetwork');
    void h.runtime.updateInterface('u', { name: 'eth1', addresses: ['10.2.0.2/24'] }).catch(() => undefined);
    for (let i = 0; i < 200 && (await sandboxTypes()).at(-1) !== 'GuestNetworkUpdateRequested'; i++)
      await new Promise((r) => setTimeout(r, 5));
    h.agent.sever();
    h.hypervisor.sever();
    h.world.hangs.delete('updateNetwork');
    const rt2 = await h.restart();
    await rt2.idle();
    assert.equal((await sandboxTypes()).at(-1), 'GuestNetworkUpdated');
    assert.ok(h.world.vms.get('u')?.network?.interfaces.has('eth1'));
    assert.deepEqual(Object.keys(rt2.getSandbox('u').guestNetwork?.interfaces ?? {}).sort(), [
      'eth0',
      'eth1',
    ]);
    assert.deepEqual(checkTransitions(await h.events()), []);
  });
});
