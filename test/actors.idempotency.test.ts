// One intent, one run: an effect asked again for a cause whose run is still in flight joins that run.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import type { ActorRuntime } from '../src/actors/runtime.js';
import { checkTransitions } from '../src/machines/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';

describe('effects run once per cause', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.cleanup();
    h = undefined;
  });

  it('joins a second request to run a container create whose first run is still in flight', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    h.world.delays.createContainer = 300;
    const creating = h.runtime.createContainer({ sandboxId: 's', id: 'c', bundle: h.bundle });
    const rt = h.runtime as unknown as ActorRuntime;
    const sandbox = rt.sandboxes.get('s')!;
    // Wait until the request is logged and its effect started.
    while (sandbox.containers.get('c')?.state !== 'creating') await new Promise((r) => setImmediate(r));
    const container = sandbox.containers.get('c')!;
    const request = (await h.events()).find((e) => e.type === 'ContainerCreateRequested')!;
    // What recovery (or anything else) would do if it took the intent for an unsettled one.
    const again = rt.effects.start(container, 'createContainer', request, true);
    assert.equal((await creating).state, 'created');
    await again;
    await rt.idle();
    const creates = h.world.effects.filter((e) => e.op === 'createContainer');
    assert.equal(creates.length, 1);
    assert.equal(creates[0]?.retry, false, 'the first run is the one that acted');
    assert.deepEqual(h.world.violations, []);
    const events = await h.events();
    assert.equal(events.filter((e) => e.type === 'ContainerCreated').length, 1);
    assert.equal(events.filter((e) => e.type === 'ContainerCreateFailed').length, 0);
    assert.deepEqual(checkTransitions(events), []);
  });

  it('puts the bundle in the share whole, leaving no staging dir behind', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    await h.runtime.createContainer({ sandboxId: 's', id: 'c', bundle: h.bundle });
    const shared = join(h.stateDir, 'sandboxes', 's', 'shared');
    assert.deepEqual(await readdir(shared), ['c']);
    assert.equal(await readFile(join(shared, 'c', 'rootfs', 'bin', 'sh'), 'utf8'), '#!fake\n');
    assert.match(await readFile(join(shared, 'c', 'config.json'), 'utf8'), /ociVersion/);
  });

  it('runs the same effect again once the earlier run for that cause has ended', async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('s', {});
    await h.runtime.startSandbox('s');
    const rt = h.runtime as unknown as ActorRuntime;
    const sandbox = rt.sandboxes.get('s')!;
    const request = (await h.events()).find((e) => e.type === 'SandboxStartRequested')!;
    // initGuest is safe to repeat (the guest answers AlreadyExists); a finished run must not be joined.
    await rt.effects.start(sandbox, 'initGuest', request, true);
    await rt.idle();
    assert.equal(h.agent.calls.filter((c) => c === 'createSandbox:s').length, 2);
  });
});
