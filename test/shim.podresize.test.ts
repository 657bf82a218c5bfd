// pod-resize.ts: the size a pod's VM needs for its containers' limits, and the growth sandbox.update is asked
// for. No VM: the rule alone (test/shim.cri drives it through CRI's UpdateContainerResources).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { growth, limitsAfter, limitsOfSpec, NO_LIMITS, podNeeds } from '../src/shim/pod-resize.js';

const MiB = 1024 * 1024;

describe('shim pod-resize: a pod VM grows to hold its containers', () => {
  it("reads a bundle's limits and keeps what an update leaves out", () => {
    assert.deepEqual(limitsOfSpec({}), NO_LIMITS);
    assert.deepEqual(limitsOfSpec({ memory: { limit: 64 * MiB }, cpu: { quota: 50_000, period: 100_000 } }), {
      memoryBytes: 64 * MiB,
      cpus: 0.5,
    });
    assert.deepEqual(limitsOfSpec({ memory: { limit: -1 }, cpu: { quota: -1 } }), NO_LIMITS);
    const before = { memoryBytes: 64 * MiB, cpus: 0.5 };
    assert.deepEqual(limitsAfter(before, { memoryLimitBytes: 128 * MiB }, 100_000), {
      memoryBytes: 128 * MiB,
      cpus: 0.5,
    });
    assert.deepEqual(limitsAfter(before, { cpuQuota: 300_000 }, 100_000), { memoryBytes: 64 * MiB, cpus: 3 });
    assert.deepEqual(limitsAfter(before, { cpuPeriod: 50_000 }, 100_000), {
      memoryBytes: 64 * MiB,
      cpus: 0.5,
    });
  });

  it('needs the base plus the sum of the limits (CPUs rounded up), and only grows, memory in 128 MiB steps', () => {
    const need = podNeeds([
      { memoryBytes: 512 * MiB, cpus: 2 },
      { memoryBytes: 100 * MiB, cpus: 0.25 },
      NO_LIMITS,
    ]);
    assert.deepEqual(need, { vcpus: 4, memoryMiB: 1124 });
    assert.deepEqual(growth({ vcpus: 2, memoryMiB: 640 }, need), { vcpus: 4, memoryMiB: 1152 });
    assert.deepEqual(growth({ vcpus: 4, memoryMiB: 640 }, need), { memoryMiB: 1152 });
    assert.equal(growth({ vcpus: 8, memoryMiB: 2048 }, need), undefined);
    assert.deepEqual(podNeeds([]), { vcpus: 1, memoryMiB: 512 });
  });
});
