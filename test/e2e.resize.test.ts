// sandbox.update for real: QEMU (TCG) hotplugs a vCPU and a DIMM, the guest agent onlines them, a container sees them; recovery catches up.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { streamOf } from '../src/events/index.js';
import { createBusyboxBundle } from '../src/image/index.js';
import { execIn, openRealWorld, type RealWorld } from './fixtures/hypervisor-world.js';
import { qemuPidsUsing } from './support/vm.js';

const sb = 'grow';
const config = { vcpus: 1, maxVcpus: 2, memoryMiB: 512, maxMemoryMiB: 1024 };

/** What the container sees: online CPUs (sysfs list) and MemTotal in kB. */
interface GuestView {
  readonly online: string;
  readonly memTotalKiB: number;
}

let execs = 0;

async function guestView(world: RealWorld): Promise<GuestView> {
  execs += 1;
  const id = `look${execs}`;
  const args = ['sh', '-c', 'cat /sys/devices/system/cpu/online; grep MemTotal /proc/meminfo'];
  const { out, status } = await execIn(world, sb, 'box', id, args);
  assert.equal(status.exitCode, 0, out);
  const [online = '', mem = ''] = out.trim().split('\n');
  return { online: online.trim(), memTotalKiB: Number(/(\d+)/.exec(mem)?.[1] ?? Number.NaN) };
}

async function resizes(world: RealWorld): Promise<unknown[]> {
  const data: unknown[] = [];
  for await (const e of world.store.readStream(streamOf.sandbox(sb))) {
    if (e.type === 'SandboxResized') data.push(e.data);
  }
  return data;
}

/** A hotplugged block shows up as exactly its size in MemTotal; allow a little for kernel bookkeeping. */
function grewByOneBlock(before: number, after: number): boolean {
  const grownKiB = after - before;
  return grownKiB > 120 * 1024 && grownKiB <= 128 * 1024;
}

describe('a real sandbox grows with sandbox.update', { timeout: 900_000 }, () => {
  let dir: string;
  let world: RealWorld;
  let boot: GuestView;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-resize-'));
    await createBusyboxBundle(join(dir, 'bundles', 'box'), { args: ['sleep', '100000'] });
    world = await openRealWorld(join(dir, 'world'));
  });

  after(async () => {
    await world?.runtime.deleteSandbox(sb, { force: true }).catch(() => undefined);
    await world?.close().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('boots at its config size and runs a container', async () => {
    const created = await world.runtime.createSandbox(sb, config);
    assert.deepEqual([created.vcpus, created.memoryMiB], [1, 512]);
    assert.equal((await world.runtime.startSandbox(sb)).state, 'running');
    await world.runtime.createContainer({ sandboxId: sb, id: 'box', bundle: join(dir, 'bundles', 'box') });
    await world.runtime.startContainer(sb, 'box');
    boot = await guestView(world);
    assert.equal(boot.online, '0');
    assert.ok(boot.memTotalKiB > 300 * 1024 && boot.memTotalKiB <= 512 * 1024, String(boot.memTotalKiB));
  });

  it('grows to 2 vCPUs and 640 MiB: the container sees the new CPU online and 128 MiB more', async () => {
    const view = await world.runtime.updateSandbox(sb, { vcpus: 2, memoryMiB: 640 });
    assert.deepEqual([view.state, view.vcpus, view.memoryMiB], ['running', 2, 640]);
    const now = await guestView(world);
    assert.equal(now.online, '0-1');
    assert.ok(grewByOneBlock(boot.memTotalKiB, now.memTotalKiB), `${boot.memTotalKiB} → ${now.memTotalKiB}`);
    assert.deepEqual(await resizes(world), [{ vcpus: 2, memoryMiB: 640 }]);
    const status = world.runtime.getSandbox(sb);
    assert.deepEqual([status.vcpus, status.memoryMiB], [2, 640]);
    assert.deepEqual(await world.hypervisor.size(sb), { vcpus: 2, memoryMiB: 640 });
  });

  it('refuses what it cannot do, naming the field, and changes nothing', async () => {
    const refusals: [{ vcpus?: number; memoryMiB?: number }, string, RegExp][] = [
      [{ vcpus: 3 }, 'vcpus', /at most 2 \(maxVcpus of this sandbox\)/],
      [{ memoryMiB: 1152 }, 'memoryMiB', /at most 1024/],
      [{ vcpus: 1 }, 'vcpus', /cannot shrink/],
      [{ memoryMiB: 700 }, 'memoryMiB', /multiple of 128 MiB/],
    ];
    for (const [request, field, message] of refusals) {
      await assert.rejects(world.runtime.updateSandbox(sb, request), {
        name: 'InvalidArgument',
        field,
        message,
      });
    }
    const same = await world.runtime.updateSandbox(sb, { vcpus: 2, memoryMiB: 640 });
    assert.deepEqual([same.vcpus, same.memoryMiB], [2, 640]);
    await world.runtime.pauseSandbox(sb);
    await assert.rejects(world.runtime.updateSandbox(sb, { memoryMiB: 768 }), { name: 'InvalidState' });
    await world.runtime.resumeSandbox(sb);
    assert.deepEqual(await world.hypervisor.size(sb), { vcpus: 2, memoryMiB: 640 });
    assert.equal((await resizes(world)).length, 1);
  });

  it('after a daemon that hotplugged but died before the event, recovery records the size and onlines it', async () => {
    const before = await guestView(world);
    // What a daemon killed between hotplug and append leaves: QEMU one DIMM bigger than the log.
    await world.hypervisor.hotplugMemory(sb, 128);
    await world.close();
    world = await openRealWorld(join(dir, 'world'));
    assert.deepEqual(world.runtime.recovery.reattached, [sb]);
    assert.deepEqual((await resizes(world)).at(-1), { vcpus: 2, memoryMiB: 768 });
    assert.equal(world.runtime.getSandbox(sb).memoryMiB, 768);
    // Onlined by recovery's single call; give the guest a moment in case the call raced the ACPI event.
    let now = await guestView(world);
    for (let i = 0; i < 20 && !grewByOneBlock(before.memTotalKiB, now.memTotalKiB); i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      now = await guestView(world);
    }
    assert.ok(
      grewByOneBlock(before.memTotalKiB, now.memTotalKiB),
      `${before.memTotalKiB} → ${now.memTotalKiB}`,
    );
  });

  it('stops and deletes without leaving QEMU behind', async () => {
    await world.runtime.stopSandbox(sb);
    await world.runtime.deleteSandbox(sb);
    assert.deepEqual(await qemuPidsUsing(dir), []);
  });
});
