// A task Update's OCI LinuxResources → sandboxd's container.update: what applies, what is unchanged, what is
// refused by its OCI name (pure; the real path is test/shim.update).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resourcesOf } from '../src/shim/index.js';

const bundle = {
  devices: [{ allow: false, access: 'rwm' }],
  memory: { limit: 128 * 1024 * 1024 },
  cpu: { shares: 1024 },
};

describe('shim task Update resources', () => {
  it('maps memory.limit, cpu.quota, cpu.period, cpu.shares and pids.limit', () => {
    assert.deepEqual(
      resourcesOf({
        memory: { limit: 64 * 1024 * 1024 },
        cpu: { quota: 50_000, period: 100_000, shares: 512 },
        pids: { limit: 50 },
      }),
      {
        memoryLimitBytes: 64 * 1024 * 1024,
        cpuQuota: 50_000,
        cpuPeriod: 100_000,
        cpuShares: 512,
        pidsLimit: 50,
      },
    );
    // A cpuset's host ids, normalised: the host pins the VM (sandboxd checks they are online).
    assert.deepEqual(resourcesOf({ ...bundle, cpu: { shares: 1024, cpus: '3,1-2', mems: '0' } }, bundle), {
      cpuShares: 1024,
      cpusetCpus: '1-3',
      cpusetMems: '0',
    });
    assert.throws(
      () => resourcesOf({ cpu: { cpus: '2-1' } }),
      /resources\.cpu\.cpus: range 2-1 runs backwards/,
    );
    // kubelet's in-place resize changes the shares alone (CRI sends the rest as the bundle has it).
    assert.deepEqual(resourcesOf({ ...bundle, cpu: { shares: 2048 } }, bundle), { cpuShares: 2048 });
  });

  it("leaves members that keep the bundle's value (CRI sends the whole set, devices included)", () => {
    assert.deepEqual(
      resourcesOf({ ...bundle, memory: { limit: 96 * 1024 * 1024, swap: 0 }, cpu: { shares: 1024 } }, bundle),
      { memoryLimitBytes: 96 * 1024 * 1024 },
    );
    assert.deepEqual(resourcesOf(bundle, bundle), {});
  });

  it('refuses any other change by its OCI name, applying nothing', () => {
    assert.throws(
      () => resourcesOf({ memory: { limit: 64 * 1024 * 1024 }, cpu: { realtimeRuntime: 1000 } }, bundle),
      (err: Error & { code?: number }) =>
        err.code === 3 && /resources\.cpu\.realtimeRuntime: cannot be changed/.test(err.message),
    );
    assert.throws(
      () => resourcesOf({ devices: [{ allow: true, access: 'rwm' }] }, bundle),
      /resources\.devices: cannot be changed/,
    );
    assert.throws(() => resourcesOf({ memory: { swappiness: 10 } }, bundle), /resources\.memory\.swappiness/);
    assert.throws(
      () => resourcesOf({ memory: { limit: 64 * 1024 * 1024, swap: 128 * 1024 * 1024 } }, bundle),
      /resources\.memory\.swap: cannot be changed/,
    );
  });

  it("takes a swap equal to the limit (CRI's cgroup v1 'no swap') as nothing to apply", () => {
    const limit = 64 * 1024 * 1024;
    assert.deepEqual(resourcesOf({ ...bundle, memory: { limit, swap: limit } }, bundle), {
      memoryLimitBytes: limit,
    });
  });

  it('names the member whose value sandboxd cannot take', () => {
    assert.throws(
      () => resourcesOf({ memory: { limit: 1024 } }),
      /resources\.memory\.limit: must be an integer from 4194304/,
    );
    assert.throws(() => resourcesOf({ pids: { limit: -1 } }), /resources\.pids\.limit: unlimited \(-1\)/);
    assert.throws(
      () => resourcesOf({ cpu: { period: 5_000_000 } }),
      /resources\.cpu\.period: must be an integer from 1000 to 1000000/,
    );
    assert.throws(
      () => resourcesOf({ cpu: { shares: 1 } }),
      /resources\.cpu\.shares: must be an integer from 2 to 262144/,
    );
    assert.deepEqual(resourcesOf({ pids: { limit: -1 } }, { pids: { limit: -1 } }), {});
  });
});
