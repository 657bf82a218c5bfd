// podman (Debian's 4.3.1 with conmon 2.1.6) with sandboxd-runc as its OCI runtime: its own --root/--runroot in a
// temp dir, an image built offline and `podman load`-ed, a real daemon, real VMs. conmon runs
// `sandboxd-runc create`, waits on the keeper's pid (as a subreaper) and reads its exit status.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { assertNothingLeft, keeperPidsUsing, runc } from './support/oci.js';
import { existing, podmanCgroupDirs, podmanRemove, usePodmanWorld } from './support/oci-podman.js';
import { qemuPidsUsing, until } from './support/vm.js';

const VM_MS = 300_000;

describe('podman with sandboxd-runc as its runtime (real daemon, real VMs)', { timeout: 1_500_000 }, () => {
  const w = usePodmanWorld('sbx-podman-', VM_MS);
  const p = w.p;

  it('podman run --rm busybox echo hi prints hi', { timeout: VM_MS }, async () => {
    const r = await p('run', '--rm', '--network', 'none', 'busybox', 'echo', 'hi');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hi\n');
    await assertNothingLeft(w.world);
  });

  it("podman run sh -c 'exit 7' exits 7 (conmon reads the keeper's status)", { timeout: VM_MS }, async () => {
    const r = await p('run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'exit 7');
    assert.equal(r.code, 7, r.stderr);
    await assertNothingLeft(w.world);
  });

  it('run -d, ps (Up), inspect (State.Pid is the keeper), exec, rm -f', { timeout: VM_MS }, async () => {
    const d = await p('run', '-d', '--network', 'none', '--name', 'bg', 'busybox', 'sleep', '100000');
    assert.equal(d.code, 0, d.stderr);
    const ps = await p('ps', '--format', '{{.Names}} {{.Status}}');
    assert.match(ps.stdout, /^bg Up/m);
    const pid = Number((await p('inspect', '--format', '{{.State.Pid}}', 'bg')).stdout.trim());
    assert.match(await readFile(`/proc/${pid}/cmdline`, 'utf8'), /sandboxd-runc-keeper/);
    const e = await p('exec', 'bg', 'sh', '-c', 'echo in-exec; exit 4');
    assert.equal(e.stdout, 'in-exec\n', e.stderr);
    assert.equal(e.code, 4);
    await podmanRemove(w.world, w.podman, 'bg', { force: true });
  });

  it('logs, kill -s USR1, pause/unpause, wait, stop (SIGTERM: the exit code recorded)', {
    timeout: VM_MS,
  }, async () => {
    const script =
      'echo before; trap "echo got-usr1" USR1; trap "echo got-term; exit 3" TERM; while true; do sleep 0.2; done';
    const d = await p('run', '-d', '--network', 'none', '--name', 'life', 'busybox', 'sh', '-c', script);
    assert.equal(d.code, 0, d.stderr);
    const logs = async () => (await p('logs', 'life')).stdout;
    await until('before in the log', 60_000, async () =>
      (await logs()).includes('before\n') ? true : undefined,
    );

    assert.equal((await p('kill', '-s', 'USR1', 'life')).code, 0);
    await until('got-usr1', 60_000, async () => ((await logs()).includes('got-usr1\n') ? true : undefined));
    assert.match(
      (await p('ps', '--format', '{{.Names}} {{.Status}}')).stdout,
      /^life Up/m,
      'USR1 is trapped',
    );

    assert.equal((await p('pause', 'life')).code, 0);
    assert.equal((await p('inspect', '--format', '{{.State.Status}}', 'life')).stdout.trim(), 'paused');
    assert.equal(
      JSON.parse(
        (await runc(w.world, ['state', (await p('inspect', '--format', '{{.Id}}', 'life')).stdout.trim()]))
          .stdout,
      ).status,
      'paused',
    );
    assert.equal((await p('unpause', 'life')).code, 0);
    assert.match((await p('ps', '--format', '{{.Names}} {{.Status}}')).stdout, /^life Up/m);

    const waiting = p('wait', 'life');
    const stop = await p('stop', '-t', '20', 'life');
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal((await waiting).stdout.trim(), '3', 'podman wait gives the exit code');
    assert.equal(
      (await p('inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', 'life')).stdout.trim(),
      'exited 3',
    );
    assert.match(await logs(), /before\ngot-usr1\ngot-term\n/);
    await podmanRemove(w.world, w.podman, 'life');
  });

  it('stop of a process that ignores SIGTERM: SIGKILL after the timeout, exit 137', {
    timeout: VM_MS,
  }, async () => {
    const d = await p(
      'run',
      '-d',
      '--network',
      'none',
      '--name',
      'stubborn',
      'busybox',
      'sh',
      '-c',
      'trap "" TERM; echo ready; while true; do sleep 0.2; done',
    );
    assert.equal(d.code, 0, d.stderr);
    await until('ready', 60_000, async () =>
      (await p('logs', 'stubborn')).stdout.includes('ready') ? true : undefined,
    );
    const t0 = Date.now();
    const stop = await p('stop', '-t', '3', 'stubborn');
    const took = Date.now() - t0;
    assert.equal(stop.code, 0, stop.stderr);
    assert.ok(took >= 3000, `SIGKILL only after the 3 s grace (${took} ms)`);
    assert.equal((await p('inspect', '--format', '{{.State.ExitCode}}', 'stubborn')).stdout.trim(), '137');
    await podmanRemove(w.world, w.podman, 'stubborn');
  });

  it("the host cgroup podman names holds the VM's QEMU and the keeper; rm removes it", {
    timeout: VM_MS,
  }, async () => {
    const d = await p('run', '-d', '--network', 'none', '--name', 'cg', 'busybox', 'sleep', '100000');
    assert.equal(d.code, 0, d.stderr);
    const dirs = await podmanCgroupDirs(w.podman, 'cg');
    assert.ok(dirs.length > 0, 'at least one cgroup hierarchy is mounted');
    const [qemu] = await qemuPidsUsing(w.world.dir);
    const [keeper] = await keeperPidsUsing(w.world.dir);
    assert.ok(qemu && keeper, `a QEMU (${qemu}) and a keeper (${keeper})`);
    assert.equal(Number((await p('inspect', '--format', '{{.State.Pid}}', 'cg')).stdout.trim()), keeper);
    for (const dir of dirs) {
      const procs = (await readFile(`${dir}/cgroup.procs`, 'utf8')).split('\n').filter(Boolean).map(Number);
      assert.deepEqual(
        [procs.includes(qemu), procs.includes(keeper)],
        [true, true],
        `${dir}/cgroup.procs (${procs.join(' ')}) has QEMU ${qemu} and keeper ${keeper}`,
      );
    }
    // The VM's memory is accounted there: more than the keeper's < 1 MiB, a booted guest's pages.
    const memory = dirs.find((x) => x.startsWith('/sys/fs/cgroup/memory/'));
    if (memory) {
      const usage = Number((await readFile(`${memory}/memory.usage_in_bytes`, 'utf8')).trim());
      assert.ok(usage > 32 * 1024 * 1024, `memory.usage_in_bytes ${usage} counts the VM`);
    }
    await podmanRemove(w.world, w.podman, 'cg', { force: true });
    assert.deepEqual(await existing(dirs), [], 'rm removed the cgroup in every hierarchy');
  });

  it("podman top with ps(1) options lists the guest's processes (ps run in the container)", {
    timeout: VM_MS,
  }, async () => {
    const d = await p('run', '-d', '--network', 'none', '--name', 'top', 'busybox', 'sleep', '100000');
    assert.equal(d.code, 0, d.stderr);
    const keeper = (await p('inspect', '--format', '{{.State.Pid}}', 'top')).stdout.trim();
    // An option of ps(1) is no psgo descriptor: podman 4.3 runs `ps` in the container through the runtime's exec.
    const guest = await p('top', 'top', '-o', 'pid,args');
    assert.equal(guest.code, 0, guest.stderr);
    const rows = guest.stdout
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/));
    assert.deepEqual(rows[0], ['1', 'sleep', '100000'], guest.stdout);
    assert.ok(!guest.stdout.includes('sandboxd-runc-keeper'), 'no host process in the guest view');
    // psgo's own descriptors read the keeper's /proc and namespaces, which are the host's: what it shows
    // (docs/oci-cli.md): host processes, the keeper among them.
    const host = await p('top', 'top', 'pid', 'args');
    assert.equal(host.code, 0, host.stderr);
    assert.match(host.stdout, new RegExp(`^\\s*${keeper}\\s+.*sandboxd-runc-keeper`, 'm'), host.stdout);
    await podmanRemove(w.world, w.podman, 'top', { force: true });
  });
});
