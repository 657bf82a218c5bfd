// Graceful close: in-flight commands finish and answer, waits do not hold the shutdown, new connections are refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectApi, DaemonUnreachable } from '../src/api/index.js';
import { gate, startHarness } from './support/api-harness.js';
import { until } from './support/vm.js';

describe('api shutdown', () => {
  it('lets an in-flight start finish and answer, ends a pending wait, then refuses new clients', async () => {
    const h = await startHarness();
    try {
      const c = await connectApi(h.socketPath);
      await c.call('sandbox.create', { id: 'g' });
      await c.call('sandbox.start', { id: 'g' });
      await c.call('container.create', { sandboxId: 'g', id: 'w', bundle: h.apiBundle });
      await c.call('container.start', { sandboxId: 'g', id: 'w' });
      await c.call('sandbox.create', { id: 'g2' });
      const waiting = c.call('container.wait', { sandboxId: 'g', id: 'w' }).then(
        () => 'resolved',
        (err: unknown) => err,
      );
      // g2's VM launch is held until the close has begun: the start is in flight when it does.
      const launch = gate(h.hypervisor, 'launch');
      const starting = c.call<{ state: string }>('sandbox.start', { id: 'g2' });
      await launch.reached;
      await until('both requests are in flight', 5000, async () =>
        h.server.inFlight === 2 ? true : undefined,
      );
      const t = Date.now();
      const closed = h.server.close({ graceMs: 10_000 });
      launch.release();
      await closed;
      assert.ok(Date.now() - t < 5000, 'the wait did not hold the shutdown');
      assert.equal((await starting).state, 'running', 'the in-flight command finished and answered');
      assert.ok((await waiting) instanceof DaemonUnreachable, 'the wait ended with the connection');
      await assert.rejects(connectApi(h.socketPath), DaemonUnreachable);
    } finally {
      await h.cleanup();
    }
  });
});
