// The shim's crash cases with a real containerd, sandboxd and VMs: sandboxd killed -9 and restarted under a
// running task (containerd sees only latency: the task stays RUNNING, its output and its exit come through),
// and the shim server killed -9 (containerd runs `shim delete`: no task, sandbox, QEMU, mount or socket left).
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { mountsUnder } from '../src/actors/index.js';
import { until } from './support/containerd.js';
import {
  IMAGE,
  RUNTIME,
  type ShimWorld,
  startShimWorld,
  taskStatus,
  VM_MS,
} from './support/containerd-world.js';
import { qemuPidsUsing } from './support/vm.js';

describe('shim crash cases with a real containerd, sandboxd and VMs', { timeout: 1_800_000 }, () => {
  let world: ShimWorld;

  before(async () => {
    world = await startShimWorld();
  });

  after(async () => {
    await world?.stop();
  });

  it('sandboxd killed -9 and restarted: the task stays RUNNING, its output and its exit come through', {
    timeout: VM_MS,
  }, async () => {
    // An attached ctr run: its Wait and its output follow are in flight across the restart.
    const script = 'trap "echo bye; exit 7" TERM; echo hello; while :; do sleep 1; done';
    const run = world.ctrd.ctrSpawn(['run', '--rm', '--runtime', RUNTIME, IMAGE, 'c1', 'sh', '-c', script]);
    const exited = new Promise<number | null>((r) => run.child.once('exit', (code) => r(code)));
    try {
      await until(
        'hello from c1',
        () => (run.stdout().includes('hello\n') ? true : undefined),
        VM_MS - 60_000,
      );
      const d = world.daemon;
      const gone = new Promise((r) => d.once('exit', r));
      d.kill('SIGKILL');
      await gone;
      await world.restartDaemon();
      await taskStatus(world, 'c1', 'RUNNING');
      const k = await world.ctr(['task', 'kill', 'c1']);
      assert.equal(k.code, 0, k.stderr);
      const code = await exited;
      const why = `stdout ${JSON.stringify(run.stdout())}\n--- shim log ---\n${await world.shimLog()}`;
      assert.equal(code, 7, why);
      assert.equal(run.stdout(), 'hello\nbye\n', why);
      assert.match(await world.shimLog(), /sandboxd connection back/);
    } finally {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    }
    await until('c1 gone from containerd', async () =>
      (await world.ctr(['containers', 'ls', '-q'])).stdout.trim() === '' ? true : undefined,
    );
  });

  it('the shim server killed -9: containerd runs shim delete and nothing of the task is left', {
    timeout: VM_MS,
  }, async () => {
    const r = await world.ctr(['run', '-d', '--runtime', RUNTIME, IMAGE, 'c2', 'sleep', '100000']);
    assert.equal(r.code, 0, r.stderr);
    await taskStatus(world, 'c2', 'RUNNING');
    const pid = await world.shimPid();
    assert.ok(pid !== undefined, 'a shim server serves c2');
    process.kill(pid, 'SIGKILL');
    await until(
      'containerd to drop the task',
      async () => ((await world.ctr(['task', 'ls', '-q'])).stdout.trim() === '' ? true : undefined),
      120_000,
    );
    await until(
      'sandboxd to have no sandbox',
      async () => ((await world.call<unknown[]>('sandbox.list')).length === 0 ? true : undefined),
      120_000,
    );
    await until('no QEMU', async () => ((await qemuPidsUsing(world.dir)).length === 0 ? true : undefined));
    assert.deepEqual(await mountsUnder(world.ctrd.dir), [], 'the rootfs is unmounted');
    await assert.rejects(access(world.shimSocket), /ENOENT/, 'the dead server socket is removed');
    assert.equal(await world.shimPid(), undefined, 'and its pid file');
    assert.equal((await world.ctr(['containers', 'delete', 'c2'])).code, 0);
  });
});
