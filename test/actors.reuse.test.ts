// Ids are reusable after delete (containerd and podman reuse names): each life has its own stream, and the log
// keeps every earlier life; recovery tells the lives apart. Execs can be registered, started later and deleted.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NotFound } from '../src/errors/index.js';
import { checkTransitions } from '../src/machines/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';

describe('ids reused after delete', () => {
  let h: Harness;
  before(async () => {
    h = await makeHarness();
  });
  after(async () => {
    await h.cleanup();
  });

  const streams = async () => [...new Set((await h.events()).map((e) => e.stream))];

  it('creates the same sandbox id three times, each a new life with its own stream', async () => {
    for (const life of [1, 2, 3]) {
      const view = await h.runtime.createSandbox('s1', { labels: { life: String(life) } });
      assert.equal(view.incarnation, life);
      assert.equal(view.state, 'created');
      await h.runtime.startSandbox('s1');
      await h.runtime.deleteSandbox('s1', { force: true });
      assert.throws(() => h.runtime.getSandbox('s1'), NotFound);
    }
    const mine = (await streams()).filter((s) => s.startsWith('sandbox-s1'));
    assert.deepEqual(mine, ['sandbox-s1', 'sandbox-s1~2', 'sandbox-s1~3']);
  });

  it('creates the same container id three times in one sandbox; a new sandbox life starts its containers at 1', async () => {
    await h.runtime.createSandbox('s2', {});
    await h.runtime.startSandbox('s2');
    for (const life of [1, 2, 3]) {
      const c = await h.runtime.createContainer({ sandboxId: 's2', id: 'c', bundle: h.bundle });
      assert.equal(c.incarnation, life);
      await h.runtime.startContainer('s2', 'c');
      await h.runtime.deleteContainer('s2', 'c', { force: true });
    }
    await h.runtime.createContainer({ sandboxId: 's2', id: 'left', bundle: h.bundle });
    await h.runtime.deleteSandbox('s2', { force: true });
    await h.runtime.createSandbox('s2', {});
    await h.runtime.startSandbox('s2');
    const fresh = await h.runtime.createContainer({ sandboxId: 's2', id: 'c', bundle: h.bundle });
    assert.equal(fresh.incarnation, 1, 'the id counts again in the new life of its sandbox');
    assert.deepEqual(h.runtime.getSandbox('s2').containers, ['c'], 'the old life left nothing behind');
    const mine = (await streams()).filter((s) => s.startsWith('container-s2'));
    assert.deepEqual(mine, [
      'container-s2-c',
      'container-s2-c~2',
      'container-s2-c~3',
      'container-s2-left',
      'container-s2~2-c',
    ]);
  });

  it('gives the container view its start and exit times, and the delete returns how and when it ended', async () => {
    await h.runtime.createSandbox('t1', {});
    await h.runtime.startSandbox('t1');
    const created = await h.runtime.createContainer({ sandboxId: 't1', id: 'c', bundle: h.bundle });
    assert.equal(created.startedAt, undefined);
    const started = await h.runtime.startContainer('t1', 'c');
    h.world.exitProcess('t1', 'c', '', { exitCode: 3 });
    await h.runtime.waitContainer('t1', 'c');
    const ended = h.runtime.getContainer('t1', 'c');
    const log = (await h.events()).filter((e) => e.stream === 'container-t1-c');
    assert.equal(started.startedAt, log.find((e) => e.type === 'ContainerStarted')?.at);
    assert.equal(ended.exitedAt, log.find((e) => e.type === 'ContainerExited')?.at);
    assert.ok(Date.parse(ended.exitedAt!) >= Date.parse(ended.startedAt!));
    const last = await h.runtime.deleteContainer('t1', 'c');
    assert.equal(last.exit?.exitCode, 3);
    assert.equal(last.exitedAt, ended.exitedAt);
    await h.runtime.deleteSandbox('t1', { force: true });
  });

  it('registers an exec, starts it later, deletes it, and uses its id again', async () => {
    await h.runtime.startContainer('s2', 'c');
    const created = await h.runtime.createExec('s2', 'c', 'e', { args: ['true'] });
    assert.equal(created.state, 'created');
    assert.equal(h.world.effects.filter((e) => e.op === 'execProcess').length, 0, 'nothing ran yet');
    const started = await h.runtime.startExec('s2', 'c', 'e');
    assert.ok(['running', 'exited'].includes(started.state));
    await h.runtime.killExec('s2', 'c', 'e', 'SIGKILL').catch(() => undefined);
    await h.runtime.waitExec('s2', 'c', 'e');
    await h.runtime.deleteExec('s2', 'c', 'e');
    assert.throws(() => h.runtime.getExec('s2', 'c', 'e'), NotFound);
    assert.deepEqual(h.runtime.getContainer('s2', 'c').execs, []);
    const again = await h.runtime.startExec('s2', 'c', 'e', { args: ['true'] });
    assert.equal(again.incarnation, 2);
    await assert.rejects(
      h.runtime.startExec('s2', 'c', 'nope'),
      NotFound,
      'no process and nothing registered',
    );
  });

  it('refuses to delete a running exec', async () => {
    await h.runtime.startExec('s2', 'c', 'long', { args: ['sleep', '1000'] });
    await assert.rejects(h.runtime.deleteExec('s2', 'c', 'long'), /InvalidState|not allowed/);
  });

  it('keeps every life apart after a restart, from the whole log and from snapshots', async () => {
    const before = {
      s2: h.runtime.getSandbox('s2'),
      c: h.runtime.getContainer('s2', 'c'),
      e: h.runtime.getExec('s2', 'c', 'e'),
    };
    for (const snapshots of [false, true]) {
      await h.runtime.saveSnapshots();
      await h.runtime.shutdown();
      await h.restart({ snapshots });
      assert.equal(h.runtime.getSandbox('s2').incarnation, 2);
      assert.deepEqual(h.runtime.getSandbox('s2').containers, ['c']);
      assert.equal(h.runtime.getContainer('s2', 'c').incarnation, before.c.incarnation);
      assert.equal(h.runtime.getExec('s2', 'c', 'e').incarnation, before.e.incarnation);
      assert.throws(() => h.runtime.getSandbox('s1'), NotFound, 'a deleted sandbox stays deleted');
      // The next life is counted from the log, not from memory.
      const next = await h.runtime.createSandbox('s1', {});
      assert.equal(next.incarnation, snapshots ? 5 : 4);
      await h.runtime.deleteSandbox('s1');
    }
  });

  it('leaves a log the machines agree with', async () => {
    assert.deepEqual(checkTransitions(await h.events()), []);
  });
});
