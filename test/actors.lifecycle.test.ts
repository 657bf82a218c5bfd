// The runtime drives a sandbox, its containers and execs through their lifecycles against the fake world.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkTransitions } from '../src/machines/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';

describe('actor runtime lifecycle', () => {
  let h: Harness;
  before(async () => {
    h = await makeHarness();
  });
  after(async () => {
    await h.cleanup();
  });

  it('creates and starts a sandbox: VM launched, agent connected, guest initialised', async () => {
    const created = await h.runtime.createSandbox('sb1', { hostname: 'sb1' });
    assert.equal(created.state, 'created');
    const started = await h.runtime.startSandbox('sb1');
    assert.equal(started.state, 'running');
    assert.equal(started.accel, 'tcg');
    assert.ok(h.world.vms.get('sb1')?.guestReady);
    assert.equal(h.runtime.accel, 'tcg');
    const types = (await h.events()).map((e) => e.type);
    assert.deepEqual(types, [
      'SandboxCreated',
      'SandboxStartRequested',
      'VmLaunched',
      'AgentConnected',
      'SandboxStarted',
    ]);
  });

  it('outcome events name the event that caused them', async () => {
    const events = await h.events();
    const byId = new Map(events.map((e) => [e.id, e]));
    assert.equal(byId.get(events[2]!.causationId!)?.type, 'SandboxStartRequested');
    assert.equal(byId.get(events[3]!.causationId!)?.type, 'VmLaunched');
  });

  it('copies the bundle into the sandbox share and creates, starts and execs in the container', async () => {
    const c = await h.runtime.createContainer({ sandboxId: 'sb1', id: 'c1', bundle: h.bundle });
    assert.equal(c.state, 'created');
    assert.ok(existsSync(join(h.stateDir, 'sandboxes', 'sb1', 'shared', 'c1', 'config.json')));
    assert.ok(existsSync(join(h.stateDir, 'sandboxes', 'sb1', 'shared', 'c1', 'rootfs', 'bin', 'sh')));
    assert.equal((await h.runtime.startContainer('sb1', 'c1')).state, 'running');
    const e = await h.runtime.startExec('sb1', 'c1', 'e1', { args: ['true'] });
    assert.equal(e.state, 'running');
    assert.deepEqual(h.runtime.getContainer('sb1', 'c1').execs, ['e1']);
  });

  it('turns a process exit reported by the agent into ProcessExited, unasked', async () => {
    const waiting = h.runtime.waitExec('sb1', 'c1', 'e1');
    h.world.exitProcess('sb1', 'c1', 'e1', { exitCode: 3 });
    assert.deepEqual(await waiting, { exitCode: 3 });
    assert.equal(h.runtime.getExec('sb1', 'c1', 'e1').state, 'exited');
  });

  it('records an OOM kill of the init as ContainerOomKilled then ContainerExited with oomKilled', async () => {
    const waiting = h.runtime.waitContainer('sb1', 'c1');
    h.world.oomKill('sb1', 'c1');
    const exit = await waiting;
    assert.equal(exit.oomKilled, true);
    assert.equal(exit.exitCode, 137);
    const types = (await h.events()).map((e) => e.type);
    assert.ok(types.includes('ContainerOomKilled'));
    assert.ok(types.includes('ContainerExited'));
  });

  it('pauses and resumes the sandbox', async () => {
    assert.equal((await h.runtime.pauseSandbox('sb1')).state, 'paused');
    assert.equal(h.world.vms.get('sb1')?.status, 'paused');
    assert.equal((await h.runtime.resumeSandbox('sb1')).state, 'running');
    assert.equal(h.world.vms.get('sb1')?.status, 'running');
  });

  it('refuses a disallowed command with InvalidState and writes nothing', async () => {
    const before = h.store.lastSeq();
    await assert.rejects(
      h.runtime.resumeSandbox('sb1'),
      (err: Error & { kind?: string; details?: unknown }) => {
        assert.equal(err.kind, 'InvalidState');
        assert.deepEqual(err.details, { entity: 'sandbox', id: 'sb1', state: 'running', command: 'resume' });
        return true;
      },
    );
    await assert.rejects(h.runtime.deleteSandbox('sb1'), { kind: 'InvalidState' });
    assert.equal(h.store.lastSeq(), before);
  });

  it('marks the VM lost when it dies unasked, and its running containers with it', async () => {
    await h.runtime.createSandbox('sb2', {});
    await h.runtime.startSandbox('sb2');
    await h.runtime.createContainer({ sandboxId: 'sb2', id: 'c2', bundle: h.bundle });
    await h.runtime.startContainer('sb2', 'c2');
    const waiting = h.runtime.waitContainer('sb2', 'c2');
    h.world.crashVm('sb2', 'guest panic');
    const exit = await waiting;
    assert.equal(exit.exitCode, 255);
    const view = h.runtime.getSandbox('sb2');
    assert.equal(view.state, 'lost');
    assert.equal(view.error, 'guest panic');
  });

  it('stops a sandbox, and starts it again in a fresh VM', async () => {
    assert.equal((await h.runtime.stopSandbox('sb1')).state, 'stopped');
    assert.equal(h.world.vms.has('sb1'), false);
    assert.equal(h.runtime.getContainer('sb1', 'c1').state, 'stopped');
    const again = await h.runtime.startSandbox('sb1');
    assert.equal(again.state, 'running');
    assert.equal(again.pid, h.world.vms.get('sb1')?.handle.pid);
    assert.equal((await h.runtime.stopSandbox('sb1')).state, 'stopped');
  });

  it('deletes sandboxes, leaving no directory behind', async () => {
    await h.runtime.deleteSandbox('sb1');
    await h.runtime.deleteSandbox('sb2');
    assert.throws(() => h.runtime.getSandbox('sb1'), { kind: 'NotFound' });
    assert.equal(existsSync(join(h.stateDir, 'sandboxes', 'sb1')), false);
    assert.equal(existsSync(join(h.stateDir, 'sandboxes', 'sb2')), false);
    assert.deepEqual(h.runtime.listSandboxes(), []);
  });

  it('counts a start as done when the init exits before the start replies', async () => {
    await h.runtime.createSandbox('quick', {});
    await h.runtime.startSandbox('quick');
    await h.runtime.createContainer({ sandboxId: 'quick', id: 'true', bundle: h.bundle });
    // The init runs and ends at once: the agent reports the exit before the start RPC replies.
    const agent = h.agent;
    const original = agent.startContainer.bind(agent);
    agent.startContainer = async (sandboxId, containerId) => {
      await original(sandboxId, containerId);
      h.world.exitProcess(sandboxId, containerId, '', { exitCode: 0 });
      await new Promise((r) => setTimeout(r, 20));
    };
    const view = await h.runtime.startContainer('quick', 'true');
    agent.startContainer = original;
    assert.equal(view.state, 'stopped');
    assert.deepEqual(view.exit, { exitCode: 0, oomKilled: false });
    await h.runtime.deleteSandbox('quick', { force: true });
  });

  it('takes the id of a deleted sandbox again as its next life', async () => {
    const again = await h.runtime.createSandbox('sb1', {});
    assert.equal(again.incarnation, 2);
    await h.runtime.deleteSandbox('sb1');
  });

  it('wrote a log every transition of which its machine allows', async () => {
    assert.deepEqual(checkTransitions(await h.events()), []);
    assert.deepEqual(h.world.violations, []);
  });
});
