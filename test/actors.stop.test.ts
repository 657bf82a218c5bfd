// A sandbox stop ends its running containers with SIGTERM first, and records how each ended before the VM goes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { makeHarness } from './support/actors-harness.js';

describe('sandbox stop', () => {
  it("signals each running container's init with SIGTERM and records its exit before SandboxStopped", async () => {
    const h = await makeHarness();
    try {
      await h.runtime.createSandbox('st', {});
      await h.runtime.startSandbox('st');
      for (const id of ['a', 'b']) {
        await h.runtime.createContainer({ sandboxId: 'st', id, bundle: h.bundle });
        await h.runtime.startContainer('st', id);
      }
      await h.runtime.createContainer({ sandboxId: 'st', id: 'idle', bundle: h.bundle });
      await h.runtime.stopSandbox('st', { timeoutMs: 5_000 });
      const signals = h.agent.calls.filter((c) => c.startsWith('signalProcess:'));
      assert.equal(signals.length, 2, 'one SIGTERM per running container, none for the created one');
      const events = await h.events();
      const stopped = events.find((e) => e.type === 'SandboxStopped')!;
      for (const id of ['a', 'b']) {
        const exit = events.find((e) => e.stream === `container-st-${id}` && e.type === 'ContainerExited');
        assert.ok(exit, `${id}: its exit is recorded`);
        assert.deepEqual(exit.data, { exitCode: 143, signal: 'SIGTERM', oomKilled: false });
        assert.ok(exit.seq < stopped.seq, `${id}: ended before the VM stopped`);
      }
    } finally {
      await h.cleanup();
    }
  });
});
