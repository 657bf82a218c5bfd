// End to end through the actor runtime, for real: QEMU (TCG here), the guest agent, crun, and the LevelDB log.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { filter, firstValueFrom, map, Observable, timeout } from 'rxjs';
import { type EventEnvelope, streamOf } from '../src/events/index.js';
import { isProcessAlive } from '../src/hypervisor/index.js';
import { createBusyboxBundle } from '../src/image/index.js';
import { execIn, openRealWorld, type RealWorld, worldPaths } from './fixtures/hypervisor-world.js';
import { exists, qemuPidsUsing } from './support/vm.js';

const VM_MS = 180_000;
/** The container's init counts up in a file of its rootfs (on the 9p share, so the host sees it). */
const TICKER = ['sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i > /tick; sleep 0.2; done'];

/** The first logged event (past or future) of `stream` with `type`. */
function logged(world: RealWorld, stream: string, type: string, ms = VM_MS): Promise<EventEnvelope> {
  return firstValueFrom(
    world.runtime.events(1).pipe(
      filter((event) => event.stream === stream && event.type === type),
      timeout(ms),
    ),
  );
}

async function typesIn(world: RealWorld, stream: string): Promise<string[]> {
  const types: string[] = [];
  for await (const event of world.store.readStream(stream)) types.push(event.type);
  return types;
}

async function tickOf(rootfs: string): Promise<number> {
  return Number((await readFile(join(rootfs, 'tick'), 'utf8').catch(() => '0')).trim() || '0');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('a real sandbox through the actor runtime', { timeout: 900_000 }, () => {
  let dir: string;
  let bundles: string;
  let world: RealWorld;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-e2e-'));
    bundles = join(dir, 'bundles');
    await createBusyboxBundle(join(bundles, 'ticker'), { args: TICKER });
    await createBusyboxBundle(join(bundles, 'quitter'), { args: ['sh', '-c', 'sleep 1; exit 7'] });
    world = await openRealWorld(join(dir, 'world'));
  });

  after(async () => {
    await world?.close().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  describe('the whole life of one sandbox', () => {
    const sb = 'life';
    let rootfs: string;

    it('creates and starts a sandbox: QEMU runs and the agent answers', async () => {
      await world.runtime.createSandbox(sb, { maxVcpus: 2, memoryMiB: 512, maxMemoryMiB: 1024 });
      const view = await world.runtime.startSandbox(sb);
      assert.equal(view.state, 'running');
      assert.ok(view.pid && (await isProcessAlive(view.pid)));
      assert.equal(view.accel, await world.hypervisor.accel());
      const details = await world.runtime.guestDetails(sb);
      assert.equal(details.cpus, 1);
    });

    it('creates and starts a busybox container under crun in the guest', async () => {
      await world.runtime.createContainer({ sandboxId: sb, id: 'ticker', bundle: join(bundles, 'ticker') });
      const view = await world.runtime.startContainer(sb, 'ticker');
      assert.equal(view.state, 'running');
      rootfs = join(worldPaths(join(dir, 'world')).state, 'sandboxes', sb, 'shared', 'ticker', 'rootfs');
      const deadline = Date.now() + 30_000;
      while ((await tickOf(rootfs)) < 2 && Date.now() < deadline) await sleep(200);
      assert.ok((await tickOf(rootfs)) >= 2, 'the container counts');
    });

    it('execs a process in the container and reads its output and exit code', async () => {
      const { out, status } = await execIn(world, sb, 'ticker', 'hello', [
        'sh',
        '-c',
        'echo hello from $(hostname); exit 3',
      ]);
      assert.equal(out, 'hello from busybox\n');
      assert.equal(status.exitCode, 3);
      const types = await typesIn(world, streamOf.exec(sb, 'ticker', 'hello'));
      assert.deepEqual(types.slice(-2), ['ExecStarted', 'ProcessExited']);
    });

    it('pauses: the container stops making progress; resumes: it counts again', async () => {
      const paused = await world.runtime.pauseSandbox(sb);
      assert.equal(paused.state, 'paused');
      assert.equal(await world.hypervisor.status(sb), 'paused');
      const frozen = await tickOf(rootfs);
      await sleep(1_500);
      assert.equal(await tickOf(rootfs), frozen, 'no progress while paused');
      const resumed = await world.runtime.resumeSandbox(sb);
      assert.equal(resumed.state, 'running');
      const deadline = Date.now() + 30_000;
      while ((await tickOf(rootfs)) <= frozen && Date.now() < deadline) await sleep(200);
      assert.ok((await tickOf(rootfs)) > frozen, 'progress after resume');
    });

    it('propagates a container exit code as an event in the log', async () => {
      await world.runtime.createContainer({ sandboxId: sb, id: 'quitter', bundle: join(bundles, 'quitter') });
      await world.runtime.startContainer(sb, 'quitter');
      const status = await world.runtime.waitContainer(sb, 'quitter');
      assert.equal(status.exitCode, 7);
      const exited = await logged(world, streamOf.container(sb, 'quitter'), 'ContainerExited');
      assert.equal((exited.data as { exitCode: number }).exitCode, 7);
    });

    it('updates the container memory limit, which the guest cgroup enforces', async () => {
      const limit = 96 * 1024 * 1024;
      await world.runtime.updateContainer(sb, 'ticker', { memoryLimitBytes: limit });
      const { out } = await execIn(world, sb, 'ticker', 'memmax', ['cat', '/sys/fs/cgroup/memory.max']);
      assert.equal(out.trim(), String(limit));
      assert.ok((await typesIn(world, streamOf.container(sb, 'ticker'))).includes('ContainerUpdated'));
    });

    it('hotplugs a vCPU and the guest onlines it', async () => {
      assert.equal(await world.hypervisor.hotplugCpus(sb, 2), 2);
      await world.agent.onlineCpuMem(sb, { cpus: 2 });
      const details = await world.runtime.guestDetails(sb);
      assert.equal(details.cpus, 2);
    });

    it('stops and deletes: no QEMU, no socket, no state dir is left', async () => {
      const pid = world.runtime.getSandbox(sb).pid!;
      const stopped = await world.runtime.stopSandbox(sb);
      assert.equal(stopped.state, 'stopped');
      assert.equal(await isProcessAlive(pid), false);
      await world.runtime.deleteSandbox(sb);
      assert.equal(await exists(join(worldPaths(join(dir, 'world')).state, 'sandboxes', sb)), false);
      assert.deepEqual(await qemuPidsUsing(join(dir, 'world')), []);
    });
  });

  it('turns a QEMU killed from outside into a lost sandbox whose containers stopped', async () => {
    const sb = 'victim';
    await world.runtime.createSandbox(sb, {});
    const { pid } = await world.runtime.startSandbox(sb);
    await world.runtime.createContainer({ sandboxId: sb, id: 'ticker', bundle: join(bundles, 'ticker') });
    await world.runtime.startContainer(sb, 'ticker');
    process.kill(pid!, 'SIGKILL');
    const exited = await logged(world, streamOf.sandbox(sb), 'VmExited', 60_000);
    assert.equal((exited.data as { reason: string }).reason, 'QEMU killed by signal 9 (SIGKILL)');
    await logged(world, streamOf.container(sb, 'ticker'), 'ContainerLost', 30_000);
    await world.runtime.idle();
    assert.equal(world.runtime.getSandbox(sb).state, 'lost');
    const container = world.runtime.getContainer(sb, 'ticker');
    assert.equal(container.state, 'stopped');
    await world.runtime.deleteSandbox(sb, { force: true });
    assert.deepEqual(await qemuPidsUsing(join(dir, 'world', 'state', 'sandboxes', sb)), []);
  });
});

describe('a daemon killed while its sandbox runs', { timeout: 900_000 }, () => {
  let dir: string;
  let world: RealWorld | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-e2e-crash-'));
  });

  after(async () => {
    await world?.close().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('is rebuilt from the same log: the sandbox is reattached (same QEMU pid), its container runs, exec works', async () => {
    const bundle = join(dir, 'bundles', 'ticker');
    await createBusyboxBundle(bundle, { args: TICKER });
    const worldDir = join(dir, 'world');
    const tmp = join(dir, 'tmp');
    await mkdir(tmp);
    const daemon = spawn(
      process.execPath,
      [
        new URL('./fixtures/hypervisor-daemon.js', import.meta.url).pathname,
        worldDir,
        'sb',
        'ticker',
        bundle,
      ],
      // Its relay sockets go under our temp dir: a daemon killed -9 cannot clean up after itself.
      { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TMPDIR: tmp } },
    );
    const exited = new Promise((resolve) => daemon.on('exit', resolve));
    const line = await firstValueFrom(
      new Observable<string>((subscriber) => {
        const lines = createInterface({ input: daemon.stdout! });
        lines.on('line', (text) => subscriber.next(text));
        lines.on('close', () => subscriber.error(new Error('the daemon fixture ended before it was ready')));
      }).pipe(
        map((text) => JSON.parse(text) as { ready: boolean; pid: number; container: string }),
        timeout(VM_MS),
      ),
    );
    assert.equal(line.container, 'running');
    daemon.kill('SIGKILL');
    await exited;
    assert.equal(await isProcessAlive(line.pid), true, 'the VM outlived its daemon');

    world = await openRealWorld(worldDir);
    assert.deepEqual(world.runtime.recovery.reattached, ['sb']);
    const sandbox = world.runtime.getSandbox('sb');
    assert.equal(sandbox.state, 'running');
    assert.equal(sandbox.pid, line.pid, 'same QEMU');
    assert.equal(world.runtime.getContainer('sb', 'ticker').state, 'running');
    const { out, status } = await execIn(world, 'sb', 'ticker', 'after', ['cat', '/tick']);
    assert.equal(status.exitCode, 0);
    assert.ok(Number(out.trim()) > 0);
    assert.ok((await typesIn(world, streamOf.sandbox('sb'))).includes('SandboxReattached'));

    await world.runtime.stopSandbox('sb');
    await world.runtime.deleteSandbox('sb');
    assert.equal(await isProcessAlive(line.pid), false);
    assert.deepEqual(await qemuPidsUsing(worldDir), []);
  });
});

describe('a runtime rebuilt while its sandbox is paused', { timeout: 900_000 }, () => {
  let dir: string;
  let world: RealWorld | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-e2e-resume-'));
  });

  after(async () => {
    await world?.close().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('resumes on the same QEMU and creates and runs a new container right away, every time', async () => {
    const bundle = join(dir, 'bundles', 'quitter');
    await createBusyboxBundle(bundle, { args: ['sh', '-c', 'exit 7'] });
    const worldDir = join(dir, 'world');
    world = await openRealWorld(worldDir);
    await world.runtime.createSandbox('sb', {});
    const { pid } = await world.runtime.startSandbox('sb');
    for (let round = 1; round <= 3; round++) {
      await world.runtime.pauseSandbox('sb');
      // The daemon goes away (the VM stays paused) and a new one rebuilds everything from the log.
      await world.close();
      world = undefined;
      world = await openRealWorld(worldDir);
      assert.equal(world.runtime.getSandbox('sb').state, 'paused', `round ${round}`);
      const resumed = await world.runtime.resumeSandbox('sb');
      assert.equal(resumed.pid, pid, 'same QEMU');
      const id = `after-${round}`;
      await world.runtime.createContainer({ sandboxId: 'sb', id, bundle });
      await world.runtime.startContainer('sb', id);
      const status = await world.runtime.waitContainer('sb', id);
      assert.equal(status.exitCode, 7, `round ${round}`);
      const types = await typesIn(world, streamOf.container('sb', id));
      assert.deepEqual(
        types.filter((t) => t.startsWith('ContainerCreate')),
        ['ContainerCreateRequested', 'ContainerCreated'],
        'created once, by the command',
      );
    }
    await world.runtime.stopSandbox('sb');
    await world.runtime.deleteSandbox('sb');
    assert.equal(await isProcessAlive(pid!), false);
    assert.deepEqual(await qemuPidsUsing(worldDir), []);
  });
});
