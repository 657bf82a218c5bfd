// A CRI pod's VM size from its sandbox spec's annotations (pure; the real path is test/shim.cri): the pod's
// resources on top of the VM's base size, explicit io.sandboxd.* annotations first, bad values refused by
// the annotation's name.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MEMORY_ANNOTATION, podSizeOf, VCPUS_ANNOTATION } from '../src/shim/index.js';

const MiB = 1024 * 1024;
const cri = (quota: string, period: string, memory: string) => ({
  'io.kubernetes.cri.sandbox-cpu-quota': quota,
  'io.kubernetes.cri.sandbox-cpu-period': period,
  'io.kubernetes.cri.sandbox-memory': memory,
});

describe('shim pod sizing', () => {
  it('leaves the daemon its default when nothing asks for a size', () => {
    assert.deepEqual(podSizeOf({}), {});
    assert.deepEqual(podSizeOf({ 'io.kubernetes.cri.container-type': 'sandbox' }), {});
  });

  it("adds the pod's CPUs (quota / period, rounded up) and memory (MiB, rounded up) to the base size", () => {
    assert.deepEqual(podSizeOf(cri('100000', '100000', String(128 * MiB))), { vcpus: 2, memoryMiB: 640 });
    assert.deepEqual(podSizeOf(cri('250000', '100000', String(100 * MiB + 1))), { vcpus: 4, memoryMiB: 613 });
  });

  it('takes no limit (quota -1 or 0, memory 0, as the kubelet writes for best-effort pods) as nothing to add', () => {
    assert.deepEqual(podSizeOf(cri('-1', '100000', '0')), {});
    assert.deepEqual(podSizeOf(cri('0', '0', '0')), {});
    assert.deepEqual(podSizeOf(cri('50000', '0', String(64 * MiB))), { memoryMiB: 576 });
  });

  it('lets io.sandboxd.vcpus and io.sandboxd.memory-mib win over the pod resources', () => {
    assert.deepEqual(
      podSizeOf({
        ...cri('400000', '100000', String(MiB)),
        [VCPUS_ANNOTATION]: '2',
        [MEMORY_ANNOTATION]: '1024',
      }),
      { vcpus: 2, memoryMiB: 1024 },
    );
    assert.deepEqual(podSizeOf({ [VCPUS_ANNOTATION]: '3' }), { vcpus: 3 });
  });

  it('refuses a value that is not an integer, or out of range, naming the annotation', () => {
    const refused = (annotations: Record<string, string>, name: RegExp) =>
      assert.throws(
        () => podSizeOf(annotations),
        (err: Error & { code?: number }) => name.test(err.message) && err.code === 3,
      );
    refused({ [VCPUS_ANNOTATION]: 'two' }, /annotation io\.sandboxd\.vcpus: 'two' is not an integer/);
    refused({ [VCPUS_ANNOTATION]: '0' }, /io\.sandboxd\.vcpus: 0 is not within 1\.\.64/);
    refused({ [MEMORY_ANNOTATION]: '64' }, /io\.sandboxd\.memory-mib: 64 is not within 128\.\.65536/);
    refused(cri('1.5', '100000', '0'), /io\.kubernetes\.cri\.sandbox-cpu-quota: '1\.5' is not an integer/);
    refused(cri('6400000', '100000', '0'), /sandbox-cpu-quota: 64 CPUs and the VM's own exceed 64 vCPUs/);
    refused(
      cri('0', '0', String(65536 * MiB)),
      /sandbox-memory: 65536 MiB and the VM's own exceed 65536 MiB/,
    );
  });
});
