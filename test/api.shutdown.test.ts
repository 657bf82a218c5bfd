// Graceful close: in-flight commands finish and answer, waits do not hold the shutdown, new connections are refused.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { connectApi, DaemonUnreachable } from '../src/api/index.js';
import { startHarness } from './support/api-harness.js';

describe('api shutdown', () => {
  it('lets an in-flight start finish and answer, ends a pending wait, then refuses new clients', async () => {
    const h = await startHarness({ fake: { startDelayMs: 300 } });
    try {
      const c = await connectApi(h.socketPath);
      await c.call('sandbox.create', { id: 'g' });
      await c.call('sandbox.start', { id: 'g' });
      await h.runtime.createContainer({
        sandboxId: 'g',
        id: 'w',
        bundle: '/b',
        process: { args: ['sleep'] },
      });
      await c.call('container.start', { sandboxId: 'g', id: 'w' });
      await c.call('sandbox.create', { id: 'g2' });
      const waiting = c.call('container.wait', { sandboxId: 'g', id: 'w' }).then(
        () => 'resolved',
        (err: unknown) => err,
      );
      const starting = c.call<{ state: string }>('sandbox.start', { id: 'g2' });
      await new Promise((r) => setTimeout(r, 50));
      const t = Date.now();
      await h.server.close({ graceMs: 10_000 });
      assert.ok(Date.now() - t < 5000, 'the wait did not hold the shutdown');
      assert.equal((await starting).state, 'running', 'the in-flight command finished and answered');
      assert.ok((await waiting) instanceof DaemonUnreachable, 'the wait ended with the connection');
      await assert.rejects(connectApi(h.socketPath), DaemonUnreachable);
    } finally {
      await rm(h.dir, { recursive: true, force: true });
    }
  });
});
