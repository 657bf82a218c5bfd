// QemuHypervisor with the real guest image under real QEMU: launch, pause/resume, hotplug, reattach, kill, stop, destroy.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { firstValueFrom, take, toArray } from 'rxjs';
import { HypervisorError, InvalidArgument } from '../src/errors/index.js';
import {
  createQemuHypervisor,
  type GuestImagePaths,
  isProcessAlive,
  type QemuHypervisor,
  type VmConfig,
  type VmEvent,
  type VmHandle,
} from '../src/hypervisor/index.js';
import { ensureGuestImage } from '../src/image/index.js';
import { exists, qemuPidsUsing, until } from './support/vm.js';

const logger = pino({ level: 'silent' });

describe('QemuHypervisor with the real guest (TCG here)', { timeout: 240_000 }, () => {
  let image: GuestImagePaths;
  let work: string;
  let hypervisor: QemuHypervisor;
  const others: QemuHypervisor[] = [];

  const configOf = async (sandboxId: string, overrides: Partial<VmConfig> = {}): Promise<VmConfig> => {
    const sharedDir = join(work, `${sandboxId}-shared`);
    await mkdir(sharedDir, { recursive: true });
    return {
      sandboxId,
      stateDir: join(work, `${sandboxId}-state`),
      sharedDir,
      image,
      vcpus: 1,
      maxVcpus: 3,
      memoryMiB: 512,
      maxMemoryMiB: 1024,
      ...overrides,
    };
  };

  before(async () => {
    image = await ensureGuestImage({ logger });
    work = await mkdtemp(join(tmpdir(), 'sbx-hv-'));
    hypervisor = createQemuHypervisor({ logger });
  });

  after(async () => {
    for (const pid of await qemuPidsUsing(work)) process.kill(pid, 'SIGKILL');
    await hypervisor.close();
    for (const other of others) await other.close();
    await rm(work, { recursive: true, force: true });
  });

  describe('one VM through its whole life', () => {
    let config: VmConfig;
    let handle: VmHandle;

    it('launches detached in its own session and QMP answers', async () => {
      config = await configOf('life');
      handle = await hypervisor.launch(config);
      // Frozen at once, so the rest of this life does not depend on what the guest does once it boots.
      await hypervisor.pause('life');
      assert.equal(handle.accel, await hypervisor.accel());
      assert.equal(await isProcessAlive(handle.pid, handle.pidStartTime), true);
      // -daemonize: QEMU is not our child and runs in a session of its own, so it outlives the daemon.
      const fieldsOf = async (pid: number | 'self') =>
        (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
      const [vm, self] = [await fieldsOf(handle.pid), await fieldsOf('self')];
      assert.notEqual(Number(vm[1]), process.pid, 'parent is not the daemon');
      assert.notEqual(vm[3], self[3], 'not in our session');
      for (const file of [handle.qmpSocket, handle.agentSocket, join(config.stateDir, 'qemu.pid')]) {
        assert.equal(await exists(file), true, file);
      }
      assert.equal(await hypervisor.status('life'), 'paused');
    });

    it('hotplugs vCPUs up to a total and refuses more than maxVcpus', async () => {
      const qmp = hypervisor.qmp('life');
      assert.equal((await qmp.execute<unknown[]>('query-cpus-fast')).length, 1);
      assert.equal(await hypervisor.hotplugCpus('life', 2), 2);
      assert.equal((await qmp.execute<unknown[]>('query-cpus-fast')).length, 2);
      assert.equal(await hypervisor.hotplugCpus('life', 2), 2, 'asking for the current total adds nothing');
      await assert.rejects(hypervisor.hotplugCpus('life', 4), InvalidArgument);
    });

    it('hotplugs a memory DIMM', async () => {
      const qmp = hypervisor.qmp('life');
      await hypervisor.hotplugMemory('life', 128);
      const devices = await qmp.execute<{ type: string; data: { size: number } }[]>('query-memory-devices');
      assert.equal(devices.length, 1);
      assert.equal(devices[0]!.type, 'dimm');
      assert.equal(devices[0]!.data.size, 128 * 1024 * 1024);
      await assert.rejects(hypervisor.hotplugMemory('life', 4096), HypervisorError, 'beyond maxmem');
      assert.equal(
        (await qmp.execute<unknown[]>('query-memory-devices')).length,
        1,
        'failed add leaves no DIMM',
      );
    });

    it('reports its size, and refuses a DIMM once every slot is taken, before adding a backend', async () => {
      const qmp = hypervisor.qmp('life');
      assert.deepEqual(await hypervisor.size('life'), { vcpus: 2, memoryMiB: 640 });
      // 512 MiB boot + 4 slots × 128 MiB reaches maxmem 1024 exactly: the fifth asks for a slot that is not there.
      for (let i = 0; i < 3; i++) await hypervisor.hotplugMemory('life', 128);
      assert.deepEqual(await hypervisor.size('life'), { vcpus: 2, memoryMiB: 1024 });
      await assert.rejects(hypervisor.hotplugMemory('life', 2), {
        name: 'InvalidArgument',
        field: 'sizeMiB',
        message: /no free DIMM slot: all 4 are in use/,
      });
      const backends = await qmp.execute<{ name: string; type: string }[]>('qom-list', { path: '/objects' });
      assert.equal(backends.filter((o) => o.name.startsWith('mem-')).length, 4, 'no fifth backend');
    });

    it('is reattached by a fresh instance after the first lets go (same pid)', async () => {
      hypervisor.detach('life');
      assert.equal(await hypervisor.status('life'), 'gone', 'the detached instance no longer knows it');
      const fresh = createQemuHypervisor({ logger });
      others.push(fresh);
      const again = await fresh.attach(handle);
      assert.deepEqual(again, handle);
      assert.equal(await fresh.status('life'), 'paused', 'still frozen: the same VM');
      assert.equal((await fresh.qmp('life').execute<unknown[]>('query-cpus-fast')).length, 2, 'same VM');
      // Hand it back to the main instance for the rest of the life.
      fresh.detach('life');
      assert.deepEqual(await hypervisor.attach(handle), handle);
    });

    it('refuses to attach a handle whose pid start time is not that of the VM', async () => {
      const fresh = createQemuHypervisor({ logger });
      others.push(fresh);
      const impostor = { ...handle, sandboxId: 'impostor', pidStartTime: handle.pidStartTime + 1 };
      assert.equal(await fresh.attach(impostor), undefined);
    });

    it('resumes and pauses: the status follows and events say so', async () => {
      const seen = firstValueFrom(hypervisor.events('life').pipe(take(2), toArray()));
      await hypervisor.resume('life');
      assert.equal(await hypervisor.status('life'), 'running');
      await hypervisor.pause('life');
      assert.equal(await hypervisor.status('life'), 'paused');
      assert.deepEqual(
        (await seen).map((event) => event.type),
        ['resumed', 'paused'],
      );
      await hypervisor.resume('life');
    });

    it('shows the guest booting on the console log', async () => {
      const text = await until('guest init on the console', 90_000, async () => {
        const log = await readFile(handle.consoleLog, 'utf8').catch(() => '');
        return log.includes('sandboxd-init') ? log : undefined;
      });
      assert.match(text, /sandboxd-init/);
    });

    it('stops (powerdown, then quit): the process is gone and events end with exited', async () => {
      const events = firstValueFrom(hypervisor.events('life').pipe(toArray()));
      await hypervisor.stop('life', { timeoutMs: 1_000 });
      assert.equal(await isProcessAlive(handle.pid), false);
      const all = await events;
      assert.equal(all.at(-1)?.type, 'exited');
      assert.equal(await hypervisor.status('life'), 'gone');
    });

    it('destroys: no process, no socket, no state dir; a second destroy is a no-op', async () => {
      await hypervisor.destroy('life', config.stateDir);
      assert.equal(await exists(config.stateDir), false);
      await hypervisor.destroy('life', config.stateDir);
      assert.deepEqual(await qemuPidsUsing(config.stateDir), []);
    });
  });

  it('reports a VM killed from outside (kill -9) as exited, and destroy cleans up after it', async () => {
    const config = await configOf('victim');
    const handle = await hypervisor.launch(config);
    const exited = firstValueFrom(hypervisor.events('victim').pipe(toArray()));
    process.kill(handle.pid, 'SIGKILL');
    const events = await exited;
    // sandboxd-qemu-reaper, QEMU's parent, kept how it ended.
    assert.deepEqual(events, [
      { type: 'exited', reason: 'QEMU killed by signal 9 (SIGKILL)' },
    ] satisfies VmEvent[]);
    assert.equal(await hypervisor.exitStatusOf(handle), 'QEMU killed by signal 9 (SIGKILL)');
    assert.equal(await hypervisor.status('victim'), 'gone');
    assert.equal(
      await createQemuHypervisor({ logger }).attach(handle),
      undefined,
      'a dead VM cannot be attached',
    );
    await hypervisor.destroy('victim', config.stateDir);
    assert.equal(await exists(config.stateDir), false);
  });

  it('without its reaper, still reports a VM killed from outside, as gone without a SHUTDOWN', async () => {
    const bare = createQemuHypervisor({ logger, reaperBinary: null });
    others.push(bare);
    const config = await configOf('bare');
    const handle = await bare.launch(config);
    const exited = firstValueFrom(bare.events('bare').pipe(toArray()));
    process.kill(handle.pid, 'SIGKILL');
    assert.deepEqual(await exited, [
      { type: 'exited', reason: 'QEMU process disappeared' },
    ] satisfies VmEvent[]);
    assert.equal(await bare.exitStatusOf(handle), undefined);
    await bare.destroy('bare', config.stateDir);
    assert.equal(await exists(config.stateDir), false);
  });

  it('destroys a VM it never launched or attached, found through the pidfile of its state dir', async () => {
    const config = await configOf('orphan');
    const handle = await hypervisor.launch(config);
    hypervisor.detach('orphan');
    const fresh = createQemuHypervisor({ logger });
    others.push(fresh);
    await fresh.destroy('orphan', config.stateDir);
    assert.equal(await isProcessAlive(handle.pid, handle.pidStartTime), false);
    assert.equal(await exists(config.stateDir), false);
  });

  it('leaves nothing behind when QEMU refuses to start (a kernel that is not one)', async () => {
    const badKernel = join(work, 'not-a-kernel');
    await writeFile(badKernel, 'this is not a bzImage\n');
    const config = await configOf('broken', { image: { ...image, kernel: badKernel } });
    await assert.rejects(hypervisor.launch(config), (err: unknown) => {
      assert.ok(err instanceof HypervisorError);
      assert.match(err.message, /qemu start/);
      return true;
    });
    assert.equal(await exists(config.stateDir), false);
    assert.deepEqual(await qemuPidsUsing(config.stateDir), []);
    assert.equal(await hypervisor.status('broken'), 'gone');
  });

  it('refuses a missing kernel path before creating anything', async () => {
    const config = await configOf('nokernel', { image: { ...image, kernel: join(work, 'missing') } });
    await assert.rejects(hypervisor.launch(config), InvalidArgument);
    assert.equal(await exists(config.stateDir), false);
  });
});
