// A task Update through containerd's own gRPC Tasks.Update (ctr 1.6 has no command for it) → the shim →
// sandboxd's container.update → the guest's cgroup; what cannot apply is InvalidArgument naming the OCI member
// and changes nothing; a stopped task is FailedPrecondition. Real containerd, sandboxd and VM.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { unionCpuLists } from '../src/bundle/index.js';
import { affinityOf, hostOnline } from '../src/hypervisor/index.js';
import { type TasksClient, tasksClient } from './support/containerd-grpc.js';
import {
  IMAGE,
  RUNTIME,
  type ShimWorld,
  startShimWorld,
  taskStatus,
  VM_MS,
} from './support/containerd-world.js';

const MiB = 1024 * 1024;

describe('shim task Update with a real containerd, sandboxd and VM', { timeout: 1_200_000 }, () => {
  let world: ShimWorld;
  let tasks: TasksClient;
  let n = 0;
  // The container's cgroup as the guest sees it: ctr's spec gives the container no cgroup mount, so a
  // privileged exec mounts cgroup2 and reads the file of the init's cgroup.
  const cgroup = async (file: string) => {
    const read = `mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null; cat "/sys/fs/cgroup$(cut -d: -f3 /proc/1/cgroup)/${file}"`;
    const r = await world.ctr(['task', 'exec', '--exec-id', `cat${n++}`, 'u1', 'sh', '-c', read]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  };

  before(async () => {
    world = await startShimWorld();
    tasks = tasksClient(world.ctrd.address);
  });

  after(async () => {
    tasks?.close();
    await world?.stop();
  });

  it("applies memory.limit, pids.limit, cpu.quota/period and cpu.shares to the task's cgroup in the guest", {
    timeout: VM_MS,
  }, async () => {
    const r = await world.ctr([
      'run',
      '-d',
      '--privileged',
      '--runtime',
      RUNTIME,
      IMAGE,
      'u1',
      'sleep',
      '100000',
    ]);
    assert.equal(r.code, 0, r.stderr);
    await taskStatus(world, 'u1', 'RUNNING');
    assert.equal(await cgroup('memory.max'), 'max');
    await tasks.update('default', 'u1', {
      memory: { limit: 64 * MiB },
      pids: { limit: 50 },
      cpu: { quota: 50_000, period: 100_000, shares: 512 },
    });
    assert.equal(await cgroup('memory.max'), String(64 * MiB));
    assert.equal(await cgroup('pids.max'), '50');
    assert.equal(await cgroup('cpu.max'), '50000 100000');
    // cgroup v2 has weights: 512 shares is weight 20 by the map runc and crun use.
    assert.equal(await cgroup('cpu.weight'), '20');
  });

  it('pins the VM to the cpuset on the host (cpu.cpus), refusing CPUs the host lacks', {
    timeout: VM_MS,
  }, async () => {
    const [sandbox] = await world.call<{ id: string; pid?: number }[]>('sandbox.list');
    assert.ok(sandbox?.pid, 'the sandbox has a QEMU pid');
    const online = await hostOnline('cpu');
    // taskset lists "0,1" where the kernel says "0-1": compare the ids.
    const pinnedTo = async () => unionCpuLists([await affinityOf(sandbox.pid as number)]);
    assert.equal(await pinnedTo(), unionCpuLists([online]), 'unpinned at first');
    await tasks.update('default', 'u1', { cpu: { cpus: '0' } });
    assert.equal(await pinnedTo(), '0');
    const { events } = await world.call<{ events: { data: Record<string, unknown> }[] }>('events.read', {
      types: ['ContainerUpdated'],
    });
    assert.ok(
      events.some((e) => e.data.vcpusPinnedTo === '0'),
      'the pinning is in the log',
    );
    await assert.rejects(
      tasks.update('default', 'u1', { cpu: { cpus: '4095' } }),
      (err: { code?: number; details?: string }) =>
        err.code === status.INVALID_ARGUMENT && /cpusetCpus.*4095 not online/.test(err.details ?? ''),
    );
    assert.equal(await pinnedTo(), '0', 'a refused cpuset changes nothing');
    await tasks.update('default', 'u1', { cpu: { cpus: online } });
    assert.equal(await pinnedTo(), unionCpuLists([online]));
  });

  it("takes CRI's whole set when only what applies changed (the bundle's devices and shares kept)", {
    timeout: VM_MS,
  }, async () => {
    const bundle = join(world.ctrd.dir, 'state', 'io.containerd.runtime.v2.task', 'default', 'u1');
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as {
      linux: { resources: Record<string, unknown> };
    };
    await tasks.update('default', 'u1', { ...spec.linux.resources, memory: { limit: 80 * MiB } });
    assert.equal(await cgroup('memory.max'), String(80 * MiB));
  });

  it('refuses a member the sandbox cannot honour, by its OCI name, changing nothing', {
    timeout: VM_MS,
  }, async () => {
    await assert.rejects(
      tasks.update('default', 'u1', { memory: { limit: 32 * MiB }, cpu: { realtimeRuntime: 1000 } }),
      (err: { code?: number; details?: string }) =>
        err.code === status.INVALID_ARGUMENT && /resources\.cpu\.realtimeRuntime/.test(err.details ?? ''),
    );
    assert.equal(await cgroup('memory.max'), String(80 * MiB), 'the memory limit was not applied either');
  });

  it('answers FailedPrecondition for a task that has stopped', { timeout: VM_MS }, async () => {
    assert.equal((await world.ctr(['task', 'kill', '-s', '9', 'u1'])).code, 0);
    await taskStatus(world, 'u1', 'STOPPED');
    await assert.rejects(
      tasks.update('default', 'u1', { memory: { limit: 64 * MiB } }),
      (err: { code?: number; details?: string }) => err.code === status.FAILED_PRECONDITION,
    );
  });
});
