// Crashes around sandboxd-runc, against a real daemon and real VMs: the daemon killed -9 and restarted while
// podman containers run (state still right, exec and kill work, the exit code reaches conmon), and a keeper
// killed -9 (noticed: the process in the VM is ended and its exit recorded, nothing left running or leaked), and
// output written before, during and after a daemon kill -9 reaching podman logs exactly once. The daemon keeps
// small host logs (2 files of 64 KiB) so that the start of a log is rotated away: a keeper that resumed by reading
// from the start and skipping what it had written would lose output there.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  alive,
  assertNothingLeft,
  createUnderSubreaper,
  livePidsWhose,
  runc,
  runcSpecBundle,
  runcState,
} from './support/oci.js';
import { type PodmanWorld, podmanExitCode, podmanRemove, usePodmanWorld } from './support/oci-podman.js';
import { until } from './support/vm.js';

const VM_MS = 300_000;

/**
 * Runs a detached busybox container `name` (no network) with `args`, then the case's body on its id, then removes
 * it (podmanRemove: nothing of it left). If the body fails, the container is removed with -f instead (VM, keeper,
 * conmon, cgroups; the daemon started again first if the case left it killed), so the next cases do not find its
 * QEMU left; the failure is thrown on.
 */
async function withContainer(
  w: PodmanWorld,
  name: string,
  args: string[],
  body: (id: string) => Promise<void>,
): Promise<void> {
  const d = await w.p('run', '-d', '--network', 'none', '--name', name, 'busybox', ...args);
  assert.equal(d.code, 0, d.stderr);
  try {
    await body(d.stdout.trim());
  } catch (err) {
    const daemon = w.world.daemon;
    if (daemon.exitCode !== null || daemon.signalCode !== null)
      await w.world.restart().catch(() => undefined);
    await w.podman('rm', '-f', '-t', '0', name).catch(() => undefined);
    throw err;
  }
  await podmanRemove(w.world, w.podman, name);
}

describe('sandboxd-runc crashes (real daemon, real VMs)', { timeout: 1_500_000 }, () => {
  const w = usePodmanWorld('sbx-crash-', VM_MS, {
    daemonArgs: ['--log-max-size', '64k', '--log-max-files', '2'],
  });
  const p = w.p;

  it('sandboxd kill -9 and restart under a running podman container: state, ps, exec, kill all still work', {
    timeout: VM_MS,
  }, async () => {
    const script = 'trap "exit 4" USR1; echo up; while true; do sleep 0.2; done';
    await withContainer(w, 'c1', ['sh', '-c', script], async (id) => {
      const keeper = Number((await p('inspect', '--format', '{{.State.Pid}}', 'c1')).stdout.trim());
      assert.equal((await runcState(w.world, id)).status, 'running');

      await w.world.killDaemon9();
      assert.ok(alive(keeper), 'the keeper outlives the daemon');
      await w.world.restart();

      const after = await runcState(w.world, id);
      assert.deepEqual([after.status, after.pid], ['running', keeper], 'state after the restart');
      assert.match((await p('ps', '--format', '{{.Names}} {{.Status}}')).stdout, /^c1 Up/m);
      const e = await p('exec', 'c1', 'echo', 'after-restart');
      assert.equal(e.stdout, 'after-restart\n', e.stderr);
      assert.equal((await p('kill', '-s', 'USR1', 'c1')).code, 0);
      assert.equal(await podmanExitCode(w.podman, 'c1'), 4);
    });
  });

  it('output before, during and after a sandboxd kill -9 reaches podman logs once, byte for byte', {
    timeout: VM_MS,
  }, async () => {
    // A burst of ~280 KiB (the host log keeps 128 KiB of it), then a line every 0.1 s until /tmp/stop exists.
    const pad = 'x'.repeat(80);
    const script = [
      `i=0; pad=${pad}`,
      'while [ $i -lt 3000 ]; do echo "line $i $pad"; i=$((i+1)); [ $((i % 100)) = 0 ] && sleep 0.1; done',
      'while [ ! -e /tmp/stop ]; do echo "line $i $pad"; i=$((i+1)); sleep 0.1; done',
      'echo end',
    ].join('\n');
    await withContainer(w, 'c3', ['sh', '-c', script], async () => {
      const lastLine = async () => {
        const lines = (await p('logs', 'c3')).stdout.trimEnd().split('\n');
        return Number(/^line (\d+) /.exec(lines.at(-1) ?? '')?.[1] ?? -1);
      };
      const seen = (n: number) => async () => ((await lastLine()) >= n ? true : undefined);
      await until('the burst in podman logs', 120_000, seen(3005));

      await w.world.killDaemon9();
      const killedAt = await lastLine();
      await new Promise((r) => setTimeout(r, 2000)); // the container writes on while no daemon reads
      await w.world.restart();
      await until('output after the restart in podman logs', 120_000, seen(killedAt + 40));
      assert.equal((await p('exec', 'c3', 'touch', '/tmp/stop')).code, 0);
      assert.equal(await podmanExitCode(w.podman, 'c3'), 0);

      const logs = (await p('logs', 'c3')).stdout;
      const last = Number(/line (\d+) x+\nend\n$/.exec(logs)?.[1] ?? -1);
      assert.ok(last > killedAt + 40, `lines after the restart (last ${last}, ${killedAt} at the kill)`);
      const expected = `${Array.from({ length: last + 1 }, (_, i) => `line ${i} ${pad}\n`).join('')}end\n`;
      // Compared as lines first, so that a failure names the first wrong one rather than dumping 300 KiB.
      const got = logs.split('\n');
      const want = expected.split('\n');
      const first = want.findIndex((l, i) => got[i] !== l);
      assert.equal(first, -1, `first difference at line ${first}: ${JSON.stringify(got[first])}`);
      assert.equal(logs, expected, 'byte-identical');
    });
  });

  it('exits while sandboxd is down reach conmon with their codes; the container keeper outlives its exec keepers', {
    timeout: VM_MS,
  }, async () => {
    // The container waits for /tmp/go, writes 20 lines and exits 3; a detached exec makes /tmp/go a second after it
    // starts and exits 5: both end while the daemon is down (4 s). The exec's keeper is stopped (SIGSTOP) over the
    // restart, so it is certainly still there when the container's keeper learns the exit: podman's cleanup refuses
    // a container whose exec pid still answers ("active exec sessions"), so the container's keeper must wait for it.
    const script = [
      'echo start; while [ ! -e /tmp/go ]; do sleep 0.1; done',
      'i=0; while [ $i -lt 20 ]; do echo "late $i"; i=$((i+1)); done; exit 3',
    ].join('\n');
    await withContainer(w, 'c4', ['sh', '-c', script], async () => {
      await until('start in podman logs', 120_000, async () =>
        (await p('logs', 'c4')).stdout.startsWith('start\n') ? true : undefined,
      );
      const keeper = Number((await p('inspect', '--format', '{{.State.Pid}}', 'c4')).stdout.trim());
      const x = await p('exec', '-d', 'c4', 'sh', '-c', 'sleep 1; touch /tmp/go; exit 5');
      assert.equal(x.code, 0, x.stderr);
      const execKeepers = await livePidsWhose(
        (cmd) =>
          cmd.includes('sandboxd-runc-keeper') && cmd.includes(w.world.dir) && cmd.includes('\0--exec\0'),
      );
      assert.equal(execKeepers.length, 1, 'one exec keeper');
      const execKeeper = execKeepers[0]!;
      process.kill(execKeeper, 'SIGSTOP');
      try {
        await w.world.killDaemon9();
        await new Promise((r) => setTimeout(r, 4000));
        await w.world.restart();
        // The reproduction holds only if both exits happened while the daemon was down: recovery recorded them.
        const { events } = await w.world.api.call<{
          events: { type: string; data: { exitCode?: number } }[];
        }>('events.read', {
          types: ['ContainerExitedWhileDown', 'ProcessExitedWhileDaemonDown'],
          limit: 10000,
        });
        assert.deepEqual(
          events.map((e) => [e.type, e.data.exitCode]).sort(),
          [
            ['ContainerExitedWhileDown', 3],
            ['ProcessExitedWhileDaemonDown', 5],
          ],
          'both exits were recorded by recovery (they happened while the daemon was down)',
        );
        await new Promise((r) => setTimeout(r, 2000));
        assert.ok(alive(keeper), "the container's keeper waits for its exec's keeper");
      } finally {
        process.kill(execKeeper, 'SIGCONT');
      }
      assert.equal(await podmanExitCode(w.podman, 'c4'), 3);
      const want = `start\n${Array.from({ length: 20 }, (_, i) => `late ${i}\n`).join('')}`;
      assert.equal((await p('logs', 'c4')).stdout, want);
    });
  });

  it('a podman container whose keeper is killed -9: exited (137), its VM process ended, nothing left', {
    timeout: VM_MS,
  }, async () => {
    await withContainer(w, 'c2', ['sleep', '100000'], async () => {
      const keeper = Number((await p('inspect', '--format', '{{.State.Pid}}', 'c2')).stdout.trim());
      process.kill(keeper, 'SIGKILL');
      assert.equal(await podmanExitCode(w.podman, 'c2'), 137);
    });
  });

  it('runc lifecycle: a keeper killed -9 is noticed: state says stopped, the exit is recorded, delete works', {
    timeout: VM_MS,
  }, async () => {
    const world = w.world;
    const bundle = await runcSpecBundle(join(world.dir, 'lost'), ['sleep', '100000']);
    const k = createUnderSubreaper(
      world,
      ['create', '--bundle', bundle, '--pid-file', join(world.dir, 'lost.pid'), 'lost'],
      join(world.dir, 'lost.out'),
    );
    const keeper = await k.created;
    assert.equal((await runc(world, ['start', 'lost'])).code, 0);
    assert.equal((await runcState(world, 'lost')).status, 'running');
    process.kill(keeper, 'SIGKILL');
    assert.equal(await k.exit, -9, 'the waiter sees the keeper killed');
    const s = await runcState(world, 'lost');
    assert.deepEqual([s.status, s.pid], ['stopped', 0]);
    const view = await world.api.call<{ state: string; exit?: { exitCode: number } }>('container.state', {
      sandboxId: 'oci-lost',
      id: 'lost',
    });
    assert.equal(view.state, 'stopped', 'the process in the VM was ended, not left running');
    assert.equal(view.exit?.exitCode, 137);
    assert.equal((await runc(world, ['delete', 'lost'])).code, 0);
    await assertNothingLeft(world);
  });
});
