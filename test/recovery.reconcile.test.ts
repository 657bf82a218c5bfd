// After a restart the runtime reconciles the log with the world: reattach, lost, exits while down, intents settled.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import type { VmHandle } from '../src/hypervisor/index.js';
import { checkTransitions } from '../src/machines/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';
import { FakeHypervisor } from './support/fake-world.js';
import { until } from './support/vm.js';

/** The daemon dies between two commands: nothing in flight, ports gone, no shutdown. */
async function killDaemon(h: Harness): Promise<void> {
  await h.runtime.idle();
  h.hypervisor.sever();
  h.agent.sever();
}

/** The daemon dies at the next effect call, before or after the world changed. */
function dieAtNextEffect(h: Harness, lands: boolean): Promise<void> {
  return new Promise((resolve) => {
    h.world.planCrash({
      atEffect: 1,
      lands,
      onCrash: () => {
        h.hypervisor.sever();
        h.agent.sever();
        resolve();
      },
    });
  });
}

const typesOf = async (h: Harness) => (await h.events()).map((e) => e.type);

describe('reconciliation after a restart', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    if (h) assert.deepEqual(checkTransitions(await h.events()), [], 'log and machines agree');
    await h?.cleanup();
    h = undefined;
  });

  it('reattaches to a VM that kept running, and keeps watching it', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    await h.runtime.createContainer({ sandboxId: 's', id: 'c', bundle: h.bundle });
    await h.runtime.startContainer('s', 'c');
    await killDaemon(h);
    const rt = await h.restart();
    assert.deepEqual(rt.recovery.reattached, ['s']);
    assert.equal(rt.getSandbox('s').state, 'running');
    assert.equal((await typesOf(h)).at(-1), 'SandboxReattached');
    assert.equal(h.world.effects.filter((e) => e.op === 'launch').length, 1, 'no second launch');
    // The new daemon serves it and hears its happenings.
    assert.equal((await rt.startExec('s', 'c', 'e', { args: ['id'] })).state, 'running');
    const exit = rt.waitContainer('s', 'c');
    h.world.exitProcess('s', 'c', '', { exitCode: 4 });
    assert.equal((await exit).exitCode, 4);
    await rt.idle();
    assert.equal(rt.getExec('s', 'c', 'e').state, 'exited');
  });

  it('reattaches a paused sandbox without waiting on its frozen agent, and dials the agent on resume', async () => {
    h = await makeHarness({ timeouts: { reconcile: 2000 } });
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    await h.runtime.createContainer({ sandboxId: 's', id: 'c', bundle: h.bundle });
    await h.runtime.startContainer('s', 'c');
    await h.runtime.pauseSandbox('s');
    await killDaemon(h);
    const rt = await h.restart();
    assert.deepEqual(rt.recovery.reattached, ['s']);
    assert.deepEqual(rt.recovery.lost, []);
    assert.equal(rt.getSandbox('s').state, 'paused');
    assert.equal(h.agent.calls.length, 0, 'nobody asked the frozen guest');
    await assert.rejects(rt.deleteContainer('s', 'c'), { kind: 'InvalidState' });
    assert.equal((await rt.resumeSandbox('s')).state, 'running');
    assert.equal((await rt.startExec('s', 'c', 'e', { args: ['x'] })).state, 'running');
    await rt.idle();
    assert.ok(h.agent.calls.includes('listContainers:s'), 'containers checked once the guest runs again');
  });

  /** Pause, kill the daemon, restart, resume (with a slow container list), then create + start `after`. */
  async function createRightAfterResume(createDelayMs: number): Promise<void> {
    h = await makeHarness({ timeouts: { reconcile: 5000 } });
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    await h.runtime.createContainer({ sandboxId: 's', id: 'old', bundle: h.bundle });
    await h.runtime.startContainer('s', 'old');
    await h.runtime.pauseSandbox('s');
    await killDaemon(h);
    const rt = await h.restart();
    assert.equal(rt.getSandbox('s').state, 'paused');
    // A guest just resumed under TCG answers slowly (a simulated latency, not a wait of the test): the list
    // it gives describes the moment it was asked.
    const agent = h.agent;
    const list = agent.listContainers.bind(agent);
    let listed = 0;
    const lists: Promise<unknown>[] = [];
    agent.listContainers = (sandboxId) => {
      const answer = list(sandboxId).then(async (infos) => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        listed++;
        return infos;
      });
      lists.push(answer);
      return answer;
    };
    h.world.delays.createContainer = createDelayMs;
    assert.equal((await rt.resumeSandbox('s')).state, 'running');
    assert.ok(listed > 0, 'the containers were checked (and answered) before the resume returned');
    await rt.createContainer({ sandboxId: 's', id: 'after', bundle: h.bundle });
    assert.equal((await rt.startContainer('s', 'after')).state, 'running');
    // Barrier: every list asked so far has answered and whatever it set off has run.
    await Promise.all(lists);
    await rt.idle();
    assert.equal(rt.getContainer('s', 'after').state, 'running');
    assert.equal(rt.getContainer('s', 'old').state, 'running');
    const afterTypes = (await h.events()).filter((e) => e.stream.endsWith('-after')).map((e) => e.type);
    assert.deepEqual(afterTypes, [
      'ContainerCreateRequested',
      'ContainerCreated',
      'ContainerStartRequested',
      'ContainerStarted',
    ]);
    const creates = h.world.effects.filter((e) => e.op === 'createContainer' && e.target === 'after');
    assert.equal(creates.length, 1, 'one create of the new container');
    assert.equal(creates[0]?.retry, false, 'by the command, not by recovery');
    assert.deepEqual(h.world.violations, []);
    assert.deepEqual(h.world.duplicateEffects(), []);
  }

  it('checks the containers of a sandbox found paused before its resume returns: a container created right after is not declared lost', async () => {
    await createRightAfterResume(0);
  });

  it('never runs a second create for a container whose create is in flight right after a resume', async () => {
    await createRightAfterResume(800);
  });

  it('forgets the pending check of a sandbox found paused once its VM is stopped: a later VM is not compared with the old containers', async () => {
    h = await makeHarness({ timeouts: { reconcile: 2000 } });
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    await h.runtime.pauseSandbox('s');
    await killDaemon(h);
    const rt = await h.restart();
    assert.equal((await rt.stopSandbox('s')).state, 'stopped');
    await rt.startSandbox('s');
    await rt.pauseSandbox('s');
    await rt.resumeSandbox('s');
    await rt.idle();
    assert.equal(h.agent.calls.filter((c) => c === 'listContainers:s').length, 0);
  });

  it('declares a sandbox lost when its VM died while the daemon was down, and its containers with it', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    await h.runtime.createContainer({ sandboxId: 's', id: 'c', bundle: h.bundle });
    await h.runtime.startContainer('s', 'c');
    await killDaemon(h);
    h.world.crashVm('s', 'QEMU killed by signal 9 (SIGKILL)');
    const rt = await h.restart();
    await rt.idle();
    assert.deepEqual(rt.recovery.lost, ['s']);
    const lost = (await h.events()).find((e) => e.type === 'SandboxLost');
    // How QEMU ended, as its reaper kept it, is part of the reason.
    assert.equal(
      (lost?.data as { reason?: string } | undefined)?.reason,
      'the VM was gone when the daemon restarted (QEMU killed by signal 9 (SIGKILL))',
    );
    assert.equal(rt.getSandbox('s').state, 'lost');
    assert.equal(rt.getContainer('s', 'c').state, 'stopped');
    const types = await typesOf(h);
    assert.ok(types.includes('SandboxLost') && types.includes('ContainerLost'));
  });

  it('keeps watching an intent in flight at the crash when the restart loads from snapshots', async () => {
    // A snapshot after every settled event: the restart folds from snapshots, not from the whole log.
    h = await makeHarness({ snapshotEvery: 1 });
    await h.runtime.createSandbox('s', {});
    h.world.hangs.add('connect');
    h.runtime.startSandbox('s').catch(() => undefined);
    await until('the VM launched and the agent dial in flight', 5_000, async () =>
      (await typesOf(h!)).includes('VmLaunched') ? true : undefined,
    );
    h.hypervisor.sever();
    h.agent.sever();
    // The retried dial hangs too: recovery leaves it in flight, and `events stuck` must see it.
    const rt = await h.restart();
    assert.ok(rt.recovery.snapshotsUsed > 0, 'loaded from snapshots');
    const stuck = rt.transitions?.stuck(Date.now(), 0) ?? [];
    assert.deepEqual(
      stuck.map((x) => [x.stream, x.intent, x.step]),
      [['sandbox-s', 'SandboxStartRequested', 'starting.connecting']],
    );
    h.world.hangs.delete('connect');
    await rt.deleteSandbox('s', { force: true });
  });

  it('records the exits that happened while the daemon was down, with their status', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    await h.runtime.createContainer({ sandboxId: 's', id: 'c', bundle: h.bundle });
    await h.runtime.startContainer('s', 'c');
    await h.runtime.startExec('s', 'c', 'e', { args: ['x'] });
    await killDaemon(h);
    h.world.exitProcess('s', 'c', 'e', { exitCode: 9, signal: 'SIGKILL' });
    h.world.exitProcess('s', 'c', '', { exitCode: 2 });
    const rt = await h.restart();
    assert.deepEqual(rt.getExec('s', 'c', 'e').exit, { exitCode: 9, signal: 'SIGKILL' });
    assert.deepEqual(rt.getContainer('s', 'c').exit, { exitCode: 2, oomKilled: false });
    const types = await typesOf(h);
    assert.ok(types.includes('ProcessExitedWhileDaemonDown'));
    assert.ok(types.includes('ContainerExitedWhileDown'));
  });

  it('kills the VM of a launch whose outcome never reached the log (kata-containers#5246)', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', {});
    const died = dieAtNextEffect(h, true);
    void h.runtime.startSandbox('s').catch(() => undefined);
    await died;
    assert.ok(h.world.vms.has('s'), 'the crash left a VM the log does not know of');
    h.world.planCrash(undefined);
    const rt = await h.restart();
    await rt.idle();
    assert.equal(h.world.vms.has('s'), false, 'the leaked VM is gone');
    assert.equal(rt.getSandbox('s').state, 'failed');
    assert.match(rt.getSandbox('s').error ?? '', /restarted while launching/);
    assert.equal(existsSync(join(h.stateDir, 'sandboxes', 's', 'vm')), false);
    assert.deepEqual(rt.recovery.settled, [
      { stream: 'sandbox-s', from: 'starting.launching', how: 'failed' },
    ]);
  });

  it('completes a container create whose effect landed but whose outcome was lost, without creating twice', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    const died = dieAtNextEffect(h, true);
    void h.runtime.createContainer({ sandboxId: 's', id: 'c', bundle: h.bundle }).catch(() => undefined);
    await died;
    h.world.planCrash(undefined);
    const rt = await h.restart();
    assert.equal(rt.getContainer('s', 'c').state, 'created');
    assert.ok(rt.recovery.settled.some((s) => s.from === 'creating' && s.how === 'completed'));
    assert.deepEqual(h.world.violations, []);
  });

  it('retries a container create that never reached the agent, under the same idempotency key', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    const died = dieAtNextEffect(h, false);
    void h.runtime.createContainer({ sandboxId: 's', id: 'c', bundle: h.bundle }).catch(() => undefined);
    await died;
    h.world.planCrash(undefined);
    const rt = await h.restart();
    await rt.idle();
    assert.equal(rt.getContainer('s', 'c').state, 'created');
    const creates = h.world.effects.filter((e) => e.op === 'createContainer');
    assert.equal(creates.length, 1);
    const request = (await h.events()).find((e) => e.type === 'ContainerCreateRequested');
    assert.equal(creates[0]?.key, request?.id);
    assert.equal(creates[0]?.retry, true);
  });

  it('finishes a stop that was interrupted before the VM went down', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    const died = dieAtNextEffect(h, false);
    void h.runtime.stopSandbox('s').catch(() => undefined);
    await died;
    h.world.planCrash(undefined);
    const rt = await h.restart();
    await rt.idle();
    assert.equal(rt.getSandbox('s').state, 'stopped');
    assert.equal(h.world.vms.has('s'), false);
  });

  it('reconciles sandboxes in parallel: one hung VM times out alone and is declared lost', async () => {
    h = await makeHarness();
    for (const id of ['a', 'b', 'c']) {
      await h.runtime.createSandbox(id, {});
      await h.runtime.startSandbox(id);
    }
    await killDaemon(h);
    class HungAttach extends FakeHypervisor {
      override attach(handle: VmHandle) {
        return handle.sandboxId === 'b' ? new Promise<undefined>(() => {}) : super.attach(handle);
      }
    }
    const t0 = performance.now();
    const { createRuntime } = await import('../src/actors/index.js');
    const { fakeImage, silent } = await import('./support/actors-harness.js');
    const { FakeAgent } = await import('./support/fake-world.js');
    h.runtime = await createRuntime({
      store: h.store,
      hypervisor: new HungAttach(h.world),
      agent: new FakeAgent(h.world),
      stateDir: h.stateDir,
      image: fakeImage,
      logger: silent,
      timeouts: { reconcile: 300 },
      reconcileConcurrency: 2,
      traceIntents: true,
    });
    const ms = performance.now() - t0;
    assert.ok(ms < 2000, `recovery took ${ms} ms`);
    assert.deepEqual([...h.runtime.recovery.reattached].sort(), ['a', 'c']);
    assert.deepEqual(h.runtime.recovery.lost, ['b']);
    assert.match(h.runtime.recovery.errors[0]?.message ?? '', /reconcile timed out after 300 ms/);
    assert.equal(h.runtime.getSandbox('b').state, 'lost');
  });

  it('gives the same entities from snapshots + tails as from the whole log', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    await h.runtime.createContainer({ sandboxId: 's', id: 'c', bundle: h.bundle });
    await h.runtime.saveSnapshots();
    await h.runtime.startContainer('s', 'c');
    await h.runtime.startExec('s', 'c', 'e', { args: ['x'] });
    await h.runtime.pauseSandbox('s');
    await killDaemon(h);
    const viaSnapshots = await h.restart({ effects: false, snapshots: true });
    assert.ok(viaSnapshots.recovery.snapshotsUsed >= 2);
    const a = JSON.stringify([
      viaSnapshots.listSandboxes(),
      viaSnapshots.listContainers('s'),
      viaSnapshots.getExec('s', 'c', 'e'),
    ]);
    const wholeLog = await h.restart({ effects: false, snapshots: false });
    const b = JSON.stringify([
      wholeLog.listSandboxes(),
      wholeLog.listContainers('s'),
      wholeLog.getExec('s', 'c', 'e'),
    ]);
    assert.equal(a, b);
    assert.equal(wholeLog.getSandbox('s').state, 'paused');
    await assert.rejects(wholeLog.startSandbox('s'), { kind: 'InvalidState' });
  });
});
