// A forced delete of a container whose init runs records how it ended (killed, 137) before the delete, as
// docker rm -f shows it; a container that never ran gets no exit (fake world, real runtime).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { streamOf } from '../src/events/index.js';
import { checkTransitions } from '../src/machines/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';

describe('container delete --force', () => {
  let h: Harness;
  const typesOf = async (id: string) =>
    (await h.events()).filter((e) => e.stream === streamOf.container('d', id)).map((e) => e.type);

  before(async () => {
    h = await makeHarness();
    await h.runtime.createSandbox('d', {});
    await h.runtime.startSandbox('d');
  });
  after(async () => {
    await h.cleanup();
  });

  it('records the killed init exit before the delete, and returns it', async () => {
    await h.runtime.createContainer({ sandboxId: 'd', id: 'live', bundle: h.bundle });
    await h.runtime.startContainer('d', 'live');
    const view = await h.runtime.deleteContainer('d', 'live', { force: true });
    assert.deepEqual(view.exit, { exitCode: 137, signal: 'SIGKILL', oomKilled: false });
    assert.ok(view.exitedAt && view.exitedAt >= (view.startedAt ?? ''), 'when it ended');
    const types = await typesOf('live');
    assert.deepEqual(types.slice(-3), ['ContainerDeleteRequested', 'ContainerExited', 'ContainerDeleted']);
    assert.equal(types.filter((t) => t === 'ContainerExited').length, 1, 'one end, however it was heard');
  });

  it('records no exit for a container that never ran', async () => {
    await h.runtime.createContainer({ sandboxId: 'd', id: 'idle', bundle: h.bundle });
    const view = await h.runtime.deleteContainer('d', 'idle', { force: true });
    assert.equal(view.exit, undefined);
    assert.deepEqual((await typesOf('idle')).slice(-2), ['ContainerDeleteRequested', 'ContainerDeleted']);
    assert.deepEqual(checkTransitions(await h.events()), []);
  });
});
