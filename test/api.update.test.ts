// sandbox.update through the JSON-RPC API onto the actor runtime (fake world): params checked, typed refusals naming the field, the view back.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { SandboxView } from '../src/actors/index.js';
import type { ApiClient } from '../src/api/index.js';
import { streamOf } from '../src/events/index.js';
import { type Harness, refused, withApi } from './support/api-harness.js';
import { sizingOf } from './support/fake-world.js';

describe('api: sandbox.update', () => {
  let h: Harness;
  let c: ApiClient;
  withApi((api) => {
    ({ h, c } = api);
  });
  before(async () => {
    await c.call('sandbox.create', {
      id: 'sb',
      config: { vcpus: 1, maxVcpus: 2, memoryMiB: 512, maxMemoryMiB: 1024 },
    });
    await c.call('sandbox.start', { id: 'sb' });
  });

  const resizedCount = async () => {
    let n = 0;
    for await (const e of h.store.readStream(streamOf.sandbox('sb'))) if (e.type === 'SandboxResized') n++;
    return n;
  };

  it('refuses params without a size, unknown params and bad numbers with -32602 naming the field', async () => {
    const none = await refused(c.call('sandbox.update', { id: 'sb' }));
    assert.equal(none.rpcCode, -32602);
    assert.equal(none.data.field, 'vcpus');
    assert.match(none.message, /give vcpus, memoryMiB or both/);
    const extra = await refused(c.call('sandbox.update', { id: 'sb', vcpus: 2, cpus: 2 }));
    assert.equal(extra.rpcCode, -32602);
    const zero = await refused(c.call('sandbox.update', { id: 'sb', vcpus: 0 }));
    assert.equal(zero.data.field, 'vcpus');
    const text = await refused(c.call('sandbox.update', { id: 'sb', memoryMiB: '640' }));
    assert.equal(text.data.field, 'memoryMiB');
    assert.equal(await resizedCount(), 0);
  });

  it("passes the runtime's refusals through, typed and naming the field", async () => {
    const above = await refused(c.call('sandbox.update', { id: 'sb', vcpus: 3 }));
    assert.equal(above.kind, 'InvalidArgument');
    assert.equal(above.data.field, 'vcpus');
    assert.match(above.message, /at most 2 \(maxVcpus of this sandbox\)/);
    const block = await refused(c.call('sandbox.update', { id: 'sb', memoryMiB: 600 }));
    assert.equal(block.data.field, 'memoryMiB');
    const unknown = await refused(c.call('sandbox.update', { id: 'nope', vcpus: 2 }));
    assert.equal(unknown.kind, 'NotFound');
    assert.equal(await resizedCount(), 0);
  });

  it('grows the sandbox and answers with its view, whose totals sandbox.status then shows', async () => {
    const view = await c.call<SandboxView>('sandbox.update', { id: 'sb', vcpus: 2, memoryMiB: 640 });
    assert.deepEqual([view.state, view.vcpus, view.memoryMiB], ['running', 2, 640]);
    const status = await c.call<SandboxView>('sandbox.status', { id: 'sb' });
    assert.deepEqual([status.vcpus, status.memoryMiB], [2, 640]);
    assert.equal(sizingOf(h.world.vm('sb')).vcpus, 2);
    assert.equal(await resizedCount(), 1);
  });

  it('refuses a paused sandbox with InvalidState', async () => {
    await c.call('sandbox.pause', { id: 'sb' });
    const paused = await refused(c.call('sandbox.update', { id: 'sb', memoryMiB: 768 }));
    assert.equal(paused.kind, 'InvalidState');
    await c.call('sandbox.resume', { id: 'sb' });
    assert.equal(await resizedCount(), 1);
  });
});
