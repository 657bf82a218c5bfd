// sandbox.update over the fake world: intent (SandboxResizeRequested), hotplug, onlining, outcome, the refusals, its place in the sandbox's turn, and recovery.
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { streamOf } from '../src/events/index.js';
import { checkTransitions } from '../src/machines/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';
import { sizingOf } from './support/fake-world.js';
import { gate } from './support/gate.js';

const config = { vcpus: 1, maxVcpus: 2, memoryMiB: 512, maxMemoryMiB: 1024 };
/**
 * For the crash cases: the dead daemon's resize hangs on its severed ports until this deadline (its late
 * failure then finds the log moved on and is refused); the restarted one's retry takes no time in the fake world.
 */
const crashable = { timeouts: { resizeVm: 2_000 } };

async function running(h: Harness, id = 's'): Promise<void> {
  await h.runtime.createSandbox(id, config);
  await h.runtime.startSandbox(id);
}

async function sandboxTypes(h: Harness, id = 's'): Promise<string[]> {
  const types: string[] = [];
  for await (const e of h.store.readStream(streamOf.sandbox(id))) types.push(e.type);
  return types;
}

/** The daemon dies at the Nth effect call (here: a hotplug), after the world changed (or before: `lands` false). */
function dieAtEffect(h: Harness, atEffect: number, lands = true): Promise<void> {
  return new Promise((resolve) => {
    h.world.planCrash({
      atEffect,
      lands,
      onCrash: () => {
        h.hypervisor.sever();
        h.agent.sever();
        resolve();
      },
    });
  });
}

describe('sandbox.update (fake world)', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    if (h) assert.deepEqual(checkTransitions(await h.events()), [], 'log and machines agree');
    await h?.cleanup();
    h = undefined;
  });

  it('shows the boot size in the view: the config, or the defaults launchVm uses', async () => {
    h = await makeHarness();
    const given = await h.runtime.createSandbox('s', config);
    assert.equal(given.vcpus, 1);
    assert.equal(given.memoryMiB, 512);
    const defaults = await h.runtime.createSandbox('d', {});
    assert.equal(defaults.vcpus, 1);
    assert.equal(defaults.memoryMiB, 512);
  });

  it('hotplugs vCPUs and a DIMM, has the guest online them, then appends SandboxResized with the totals', async () => {
    h = await makeHarness();
    await running(h);
    const view = await h.runtime.updateSandbox('s', { vcpus: 2, memoryMiB: 640 });
    assert.equal(view.state, 'running');
    assert.equal(view.vcpus, 2);
    assert.equal(view.memoryMiB, 640);
    const vm = sizingOf(h.world.vm('s'));
    assert.deepEqual(
      { vcpus: vm.vcpus, memoryMiB: vm.memoryMiB, dimms: vm.dimms },
      { vcpus: 2, memoryMiB: 640, dimms: 1 },
    );
    assert.deepEqual(
      { cpus: vm.onlineCpus, memoryMiB: vm.onlineMemoryMiB },
      { cpus: 2, memoryMiB: 640 },
      'the guest uses what was plugged',
    );
    const events = (await h.events()).filter((e) => e.type === 'SandboxResized');
    assert.equal(events.length, 1);
    assert.deepEqual(events[0]!.data, { vcpus: 2, memoryMiB: 640 });
    assert.deepEqual(h.runtime.getSandbox('s'), view);
    // The intent came first, before anything was plugged; the outcome names it.
    const [request, outcome] = (await h.events()).slice(-2);
    assert.deepEqual([request!.type, outcome!.type], ['SandboxResizeRequested', 'SandboxResized']);
    assert.deepEqual(request!.data, { vcpus: 2, memoryMiB: 640 });
    assert.equal(outcome!.causationId, request!.id);
    assert.match(request!.correlationId ?? '', /^api:sandbox\.update/);
  });

  it('grows one dimension alone, keeping the other', async () => {
    h = await makeHarness();
    await running(h);
    assert.equal((await h.runtime.updateSandbox('s', { memoryMiB: 768 })).vcpus, 1);
    const view = await h.runtime.updateSandbox('s', { vcpus: 2 });
    assert.deepEqual([view.vcpus, view.memoryMiB], [2, 768]);
    const data = (await h.events()).filter((e) => e.type === 'SandboxResized').map((e) => e.data);
    assert.deepEqual(data, [
      { vcpus: 1, memoryMiB: 768 },
      { vcpus: 2, memoryMiB: 768 },
    ]);
  });

  it('does nothing, and appends nothing, for the size it already has', async () => {
    h = await makeHarness();
    await running(h);
    const before = await sandboxTypes(h);
    const view = await h.runtime.updateSandbox('s', { vcpus: 1, memoryMiB: 512 });
    assert.deepEqual([view.vcpus, view.memoryMiB], [1, 512]);
    assert.deepEqual(await sandboxTypes(h), before);
    assert.equal(h.world.effects.filter((e) => e.op === 'hotplug').length, 0);
  });

  it('refuses sizes it cannot reach, naming the field, with nothing plugged or written', async () => {
    h = await makeHarness();
    await running(h);
    await h.runtime.updateSandbox('s', { memoryMiB: 640 });
    const before = await sandboxTypes(h);
    const cases: [{ vcpus?: number; memoryMiB?: number }, string, RegExp][] = [
      [{ vcpus: 3 }, 'vcpus', /at most 2 \(maxVcpus of this sandbox\)/],
      [{ memoryMiB: 1152 }, 'memoryMiB', /at most 1024 \(maxMemoryMiB of this sandbox\)/],
      [{ memoryMiB: 512 }, 'memoryMiB', /cannot shrink: unplug is not supported/],
      [{ memoryMiB: 700 }, 'memoryMiB', /multiple of 128 MiB/],
      [{}, 'vcpus', /give vcpus, memoryMiB or both/],
      // A good vCPU count does not slip through with a bad memory size.
      [{ vcpus: 2, memoryMiB: 2048 }, 'memoryMiB', /at most 1024/],
    ];
    for (const [request, field, message] of cases) {
      await assert.rejects(h.runtime.updateSandbox('s', request), (err: Error & { field?: string }) => {
        assert.equal(err.name, 'InvalidArgument', JSON.stringify(request));
        assert.equal(err.field, field, JSON.stringify(request));
        assert.match(err.message, message);
        return true;
      });
    }
    const vm = sizingOf(h.world.vm('s'));
    assert.deepEqual([vm.vcpus, vm.memoryMiB, vm.dimms], [1, 640, 1]);
    assert.deepEqual(await sandboxTypes(h), before);
  });

  it('refuses a shrink of vCPUs after growing them', async () => {
    h = await makeHarness();
    await running(h);
    await h.runtime.updateSandbox('s', { vcpus: 2 });
    await assert.rejects(h.runtime.updateSandbox('s', { vcpus: 1 }), {
      name: 'InvalidArgument',
      field: 'vcpus',
      message: /cannot shrink/,
    });
  });

  it('refuses memory once every DIMM slot is taken, before plugging vCPUs; the refusal is recorded', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', { ...config, maxMemoryMiB: 2048 });
    await h.runtime.startSandbox('s');
    for (const memoryMiB of [640, 768, 896, 1024]) await h.runtime.updateSandbox('s', { memoryMiB });
    const before = await sandboxTypes(h);
    await assert.rejects(h.runtime.updateSandbox('s', { vcpus: 2, memoryMiB: 1152 }), {
      name: 'InvalidArgument',
      field: 'memoryMiB',
      message: /no free DIMM slot/,
    });
    assert.equal(sizingOf(h.world.vm('s')).vcpus, 1, 'no vCPU was plugged either');
    // The world said no after the intent was written: both are in the log, nothing else changed.
    assert.deepEqual(await sandboxTypes(h), [...before, 'SandboxResizeRequested', 'SandboxResizeFailed']);
    const view = h.runtime.getSandbox('s');
    assert.deepEqual([view.memoryMiB, view.vcpus, view.error], [1024, 1, undefined]);
    // A refusal is history, not a lock: vCPUs alone still grow.
    assert.equal((await h.runtime.updateSandbox('s', { vcpus: 2 })).vcpus, 2);
  });

  it('refuses a sandbox that is not running (InvalidState) and an unknown one (NotFound)', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', config);
    await assert.rejects(h.runtime.updateSandbox('s', { vcpus: 2 }), {
      name: 'InvalidState',
      message: /is created: update is not allowed/,
    });
    await h.runtime.startSandbox('s');
    await h.runtime.pauseSandbox('s');
    await assert.rejects(h.runtime.updateSandbox('s', { vcpus: 2 }), {
      name: 'InvalidState',
      message: /is paused/,
    });
    await assert.rejects(h.runtime.updateSandbox('nope', { vcpus: 2 }), { name: 'NotFound' });
    assert.equal(h.world.effects.filter((e) => e.op === 'hotplug').length, 0);
    assert.equal((await sandboxTypes(h)).includes('SandboxResized'), false);
  });

  it('holds the sandbox turn: a pause asked during the hotplug waits for the resize', async () => {
    h = await makeHarness();
    await running(h);
    // The DIMM hotplug is held until the pause was asked and had its chance to run.
    const hotplug = gate(h.hypervisor, 'hotplugMemory');
    const update = h.runtime.updateSandbox('s', { vcpus: 2, memoryMiB: 640 });
    await hotplug.reached;
    const pause = h.runtime.pauseSandbox('s');
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(!(await sandboxTypes(h)).includes('SandboxPauseRequested'), 'the pause waits for its turn');
    hotplug.release();
    await Promise.all([update, pause]);
    const types = await sandboxTypes(h);
    assert.deepEqual(types.slice(-3), ['SandboxResized', 'SandboxPauseRequested', 'SandboxPaused']);
    // Two updates at once: the second sees the first's size, so each DIMM is asked for once.
    await h.runtime.resumeSandbox('s');
    const [a, b] = await Promise.allSettled([
      h.runtime.updateSandbox('s', { memoryMiB: 768 }),
      h.runtime.updateSandbox('s', { memoryMiB: 768 }),
    ]);
    assert.equal(a.status, 'fulfilled');
    assert.equal(b.status, 'fulfilled');
    assert.equal(sizingOf(h.world.vm('s')).dimms, 2);
    assert.equal((await sandboxTypes(h)).filter((t) => t === 'SandboxResized').length, 2);
  });

  it('records what QEMU took when a later step fails, then reports the failure', async () => {
    h = await makeHarness();
    await running(h);
    // The DIMM goes in, the vCPU hotplug is refused by the (fake) QEMU.
    const original = h.hypervisor.hotplugCpus.bind(h.hypervisor);
    h.hypervisor.hotplugCpus = async () => {
      throw new Error('device_add failed');
    };
    await assert.rejects(h.runtime.updateSandbox('s', { vcpus: 2, memoryMiB: 640 }), /device_add failed/);
    h.hypervisor.hotplugCpus = original;
    const view = h.runtime.getSandbox('s');
    assert.deepEqual([view.vcpus, view.memoryMiB], [1, 640]);
    const data = (await h.events()).filter((e) => e.type === 'SandboxResized').map((e) => e.data);
    assert.deepEqual(data, [{ vcpus: 1, memoryMiB: 640 }]);
    assert.deepEqual((await sandboxTypes(h)).slice(-3), [
      'SandboxResizeRequested',
      'SandboxResized',
      'SandboxResizeFailed',
    ]);
  });

  it('after a stop and a new start, the sandbox is back at its boot size and can grow again', async () => {
    h = await makeHarness();
    await running(h);
    await h.runtime.updateSandbox('s', { vcpus: 2, memoryMiB: 640 });
    await h.runtime.stopSandbox('s');
    const view = await h.runtime.startSandbox('s');
    assert.deepEqual([view.vcpus, view.memoryMiB], [1, 512]);
    assert.equal((await h.runtime.updateSandbox('s', { vcpus: 2 })).vcpus, 2);
  });

  it('recovery: a daemon killed between the hotplug and the event leaves a log that catches up with QEMU', async () => {
    h = await makeHarness(crashable);
    await running(h);
    // Effects: 1 = the DIMM, 2 = the vCPU; the daemon dies once the vCPU went in.
    const died = dieAtEffect(h, 2);
    void h.runtime.updateSandbox('s', { vcpus: 2, memoryMiB: 640 }).catch(() => undefined);
    await died;
    assert.equal((await sandboxTypes(h)).includes('SandboxResized'), false, 'the event never made it');
    h.world.planCrash(undefined);
    const rt = await h.restart();
    assert.deepEqual(rt.recovery.reattached, ['s']);
    const types = await sandboxTypes(h);
    assert.deepEqual(types.slice(-2), ['SandboxReattached', 'SandboxResized']);
    const view = rt.getSandbox('s');
    assert.deepEqual([view.state, view.vcpus, view.memoryMiB], ['running', 2, 640]);
    const vm = sizingOf(h.world.vm('s'));
    assert.deepEqual([vm.onlineCpus, vm.onlineMemoryMiB], [2, 640], 'recovery onlined them in the guest');
    // And the next restart finds log and QEMU agreeing: nothing more appended.
    await rt.idle();
    h.hypervisor.sever();
    h.agent.sever();
    const again = await h.restart();
    assert.equal((await sandboxTypes(h)).filter((t) => t === 'SandboxResized').length, 1);
    assert.equal(again.getSandbox('s').vcpus, 2);
  });

  it('recovery: a daemon killed after the intent, before any hotplug, has the resize made on restart', async () => {
    h = await makeHarness(crashable);
    await running(h);
    // The daemon dies as the DIMM is asked for (effect 1), before QEMU took it.
    const died = dieAtEffect(h, 1, false);
    void h.runtime.updateSandbox('s', { vcpus: 2, memoryMiB: 640 }).catch(() => undefined);
    await died;
    assert.equal((await sandboxTypes(h)).at(-1), 'SandboxResizeRequested', 'only the intent made it');
    assert.equal(sizingOf(h.world.vm('s')).dimms, 0, 'nothing was plugged');
    h.world.planCrash(undefined);
    const rt = await h.restart();
    await rt.idle();
    assert.deepEqual((await sandboxTypes(h)).slice(-3), [
      'SandboxResizeRequested',
      'SandboxReattached',
      'SandboxResized',
    ]);
    assert.ok(
      rt.recovery.settled.some((s) => s.stream === streamOf.sandbox('s') && s.how === 'retried'),
      'recovery says it ran the resize again',
    );
    const vm = sizingOf(h.world.vm('s'));
    assert.deepEqual([vm.vcpus, vm.memoryMiB, vm.dimms, vm.onlineCpus], [2, 640, 1, 2]);
    assert.deepEqual([rt.getSandbox('s').vcpus, rt.getSandbox('s').memoryMiB], [2, 640]);
  });

  it('recovery: a daemon killed once QEMU took it all, before the outcome, plugs nothing twice', async () => {
    h = await makeHarness(crashable);
    await running(h);
    // Effects: 1 = the DIMM, 2 = the vCPU; the daemon dies once the vCPU went in.
    const died = dieAtEffect(h, 2);
    void h.runtime.updateSandbox('s', { vcpus: 2, memoryMiB: 640 }).catch(() => undefined);
    await died;
    h.world.planCrash(undefined);
    const rt = await h.restart();
    await rt.idle();
    assert.equal((await sandboxTypes(h)).at(-1), 'SandboxResized');
    const vm = sizingOf(h.world.vm('s'));
    assert.deepEqual([vm.vcpus, vm.memoryMiB, vm.dimms], [2, 640, 1], 'one DIMM, not two');
    assert.deepEqual([vm.onlineCpus, vm.onlineMemoryMiB], [2, 640]);
  });

  it('recovery: a resize that was recorded is not appended again', async () => {
    h = await makeHarness();
    await running(h);
    await h.runtime.updateSandbox('s', { vcpus: 2, memoryMiB: 640 });
    await h.runtime.idle();
    h.hypervisor.sever();
    h.agent.sever();
    const rt = await h.restart();
    assert.equal(rt.recovery.appended, 1, 'only SandboxReattached');
    assert.equal((await sandboxTypes(h)).filter((t) => t === 'SandboxResized').length, 1);
    assert.deepEqual([rt.getSandbox('s').vcpus, rt.getSandbox('s').memoryMiB], [2, 640]);
  });
});
