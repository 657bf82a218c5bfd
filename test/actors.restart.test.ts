// A sandbox whose start failed, or whose VM died, boots again in place (no delete and re-create), over the fake world.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AgentError } from '../src/errors/index.js';
import { checkTransitions } from '../src/machines/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';

describe('starting a failed or lost sandbox again', () => {
  let h: Harness;
  before(async () => {
    h = await makeHarness();
  });
  after(async () => {
    await h.cleanup();
  });

  it('boots a sandbox again after a failed start, once the failed VM is released', async () => {
    await h.runtime.createSandbox('f1', {});
    h.world.failures.connect = new AgentError('connect', 'no agent answered');
    await assert.rejects(h.runtime.startSandbox('f1'), AgentError);
    assert.equal(h.runtime.getSandbox('f1').state, 'failed');
    delete h.world.failures.connect;
    const again = await h.runtime.startSandbox('f1');
    assert.equal(again.state, 'running');
    assert.equal(again.error, undefined, 'the old failure is no longer shown');
    assert.ok(h.world.vms.get('f1')?.guestReady);
    assert.deepEqual(h.world.violations, [], 'no launch while the failed VM still ran');
  });

  it('boots a sandbox again after its VM died; its containers stay ended until deleted', async () => {
    await h.runtime.createSandbox('l1', {});
    await h.runtime.startSandbox('l1');
    await h.runtime.createContainer({ sandboxId: 'l1', id: 'c1', bundle: h.bundle });
    const pid = h.runtime.getSandbox('l1').pid;
    h.world.crashVm('l1', 'guest panic');
    for (let i = 0; i < 100 && h.runtime.getSandbox('l1').state !== 'lost'; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(h.runtime.getSandbox('l1').state, 'lost');
    const again = await h.runtime.startSandbox('l1');
    assert.equal(again.state, 'running');
    assert.notEqual(again.pid, pid, 'a new VM');
    assert.ok(['stopped', 'lost'].includes(h.runtime.getContainer('l1', 'c1').state), 'it died with its VM');
    await h.runtime.deleteContainer('l1', 'c1');
    await h.runtime.createContainer({ sandboxId: 'l1', id: 'c2', bundle: h.bundle });
    assert.deepEqual(h.world.violations, []);
  });

  it('leaves a log the machines agree with', async () => {
    assert.deepEqual(checkTransitions(await h.events()), []);
  });
});
