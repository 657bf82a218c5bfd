// Every effect has a deadline: on expiry its …Failed event is appended and the entity is left clean.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { checkTransitions } from '../src/machines/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';

describe('effect timeouts', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.cleanup();
    h = undefined;
  });

  it('fails a start whose agent never answers, with Timeout, and kills the VM it launched', async () => {
    h = await makeHarness({ timeouts: { connectAgent: 150 } });
    h.world.hangs.add('connect');
    await h.runtime.createSandbox('slow', {});
    await assert.rejects(
      h.runtime.startSandbox('slow'),
      (err: Error & { kind?: string; details?: { step?: string } }) => {
        assert.equal(err.kind, 'Timeout');
        assert.equal(err.details?.step, 'connectAgent');
        return true;
      },
    );
    const view = h.runtime.getSandbox('slow');
    assert.equal(view.state, 'failed');
    assert.match(view.error ?? '', /connectAgent timed out after 150 ms/);
    // releaseVm runs after the failure is durable.
    await h.runtime.idle();
    assert.equal(h.world.vms.has('slow'), false);
    assert.equal(existsSync(join(h.stateDir, 'sandboxes', 'slow', 'vm')), false);
    const events = await h.events();
    const failed = events.find((e) => e.type === 'SandboxStartFailed');
    assert.ok(failed);
    assert.deepEqual((failed.data as { error: { kind: string } }).error.kind, 'Timeout');
    assert.equal(events.find((e) => e.id === failed.causationId)?.type, 'VmLaunched');
    assert.deepEqual(checkTransitions(events), []);
  });

  it('fails a container start that hangs and lets the container be deleted afterwards', async () => {
    h = await makeHarness({ timeouts: { startContainer: 100 } });
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    await h.runtime.createContainer({ sandboxId: 's', id: 'c', bundle: h.bundle });
    h.world.hangs.add('startContainer');
    await assert.rejects(h.runtime.startContainer('s', 'c'), { kind: 'Timeout' });
    assert.equal(h.runtime.getContainer('s', 'c').state, 'failed');
    h.world.hangs.delete('startContainer');
    await h.runtime.deleteContainer('s', 'c');
    assert.throws(() => h!.runtime.getContainer('s', 'c'), { kind: 'NotFound' });
  });

  it('reports a port failure as the effect failure, naming the step', async () => {
    h = await makeHarness();
    h.world.failures.pause = new Error('QMP said no');
    await h.runtime.createSandbox('p', {});
    await h.runtime.startSandbox('p');
    await assert.rejects(h.runtime.pauseSandbox('p'), /QMP said no/);
    const view = h.runtime.getSandbox('p');
    assert.equal(view.state, 'running');
    const events = await h.events();
    assert.equal(events.at(-1)?.type, 'SandboxPauseFailed');
  });
});
