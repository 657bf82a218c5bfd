// The shim's crash cases with a real containerd, sandboxd and VMs: sandboxd killed -9 and restarted under a
// running task (containerd sees only latency: the task stays RUNNING, its output and its exit come through),
// the shim server killed -9 (containerd runs `shim delete`: no task, sandbox, QEMU, mount or socket left), and
// containerd killed -9 and started again on its root and state (it reconnects to the running shim server).
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

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

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

  it('containerd killed -9 and started again: it reconnects to the running shim, the task stays RUNNING, exec and kill work', {
    timeout: VM_MS,
  }, async () => {
    const r = await world.ctr(['run', '-d', '--runtime', RUNTIME, IMAGE, 'c3', 'sleep', '100000']);
    assert.equal(r.code, 0, r.stderr);
    const pid = await taskStatus(world, 'c3', 'RUNNING');
    const server = await world.shimPid();
    await world.ctrd.kill9();
    assert.ok(server !== undefined && isAlive(server), 'the shim server outlives containerd');
    await world.ctrd.restart();
    assert.equal(await taskStatus(world, 'c3', 'RUNNING'), pid, 'the same task, by its pid');
    assert.equal(await world.shimPid(), server, 'served by the same shim server');
    const e = await world.ctr(['task', 'exec', '--exec-id', 'e1', 'c3', 'sh', '-c', 'echo $((6 * 7))']);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(e.stdout, '42\n');
    const k = await world.ctr(['task', 'kill', '-s', 'SIGKILL', 'c3']);
    assert.equal(k.code, 0, k.stderr);
    await taskStatus(world, 'c3', 'STOPPED');
    const d = await world.ctr(['task', 'delete', 'c3']);
    assert.equal(d.code, 0, d.stderr);
    assert.equal((await world.ctr(['containers', 'delete', 'c3'])).code, 0);
    await until('sandboxd to have no sandbox', async () =>
      (await world.call<unknown[]>('sandbox.list')).length === 0 ? true : undefined,
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
    // `shim delete` removes them after the sandbox is gone: polled, as the sandbox may be seen gone first.
    await until('the dead server socket to be removed', () =>
      access(world.shimSocket).then(
        () => undefined,
        () => true,
      ),
    );
    await until('its pid file to be removed', async () =>
      (await world.shimPid()) === undefined ? true : undefined,
    );
    assert.equal((await world.ctr(['containers', 'delete', 'c2'])).code, 0);
  });
});
