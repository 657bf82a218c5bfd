// podman (Debian's 4.3.1 with conmon 2.1.6) with sandboxd-runc as its OCI runtime: its own --root/--runroot in a
// temp dir, an image built offline and `podman load`-ed, a real daemon, real VMs. conmon runs
// `sandboxd-runc create`, waits on the keeper's pid (as a subreaper) and reads its exit status.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { assertNothingLeft, type OciWorld, openOciWorld, RUNC_CLI } from './support/oci.js';
import { busyboxImageArchive } from './support/oci-image.js';
import { until } from './support/vm.js';

const exec = promisify(execFile);
const VM_MS = 300_000;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** conmon processes whose command line mentions `dir` (podman's runroot is under it). */
async function conmonPidsUsing(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8').catch(() => '');
    if (cmd.startsWith('/usr/bin/conmon') && cmd.includes(dir)) out.push(Number(e));
  }
  return out;
}

describe('podman with sandboxd-runc as its runtime (real daemon, real VMs)', { timeout: 1_500_000 }, () => {
  let world: OciWorld;
  let podmanArgs: string[];

  const podman = async (...args: string[]): Promise<Result> => {
    try {
      // podman 4.3 runs `delete` without its runtime flags or environment: sandboxd-runc finds the container
      // through the pointer create left under its default root.
      const env = { ...process.env, CONTAINERS_CONF: join(world.dir, 'containers.conf') };
      const r = await exec('podman', [...podmanArgs, ...args], { timeout: VM_MS, env });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return {
        code: typeof e.code === 'number' ? e.code : -1,
        stdout: e.stdout ?? '',
        stderr: e.stderr ?? '',
      };
    }
  };

  before(async () => {
    // conmon execs the runtime itself: tsc writes main.js without the execute bit setup gives it.
    await chmod(RUNC_CLI, 0o755);
    world = await openOciWorld('sbx-podman-');
    podmanArgs = [
      ...['--root', join(world.dir, 'podman-root'), '--runroot', join(world.dir, 'podman-run')],
      ...['--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file'],
      ...['--runtime', RUNC_CLI, '--runtime-flag', `sandboxd-socket=${world.socket}`],
      ...['--runtime-flag', `root=${world.root}`],
    ];
    const vars = [
      `PATH=${process.env.PATH}`,
      `SANDBOXD_SOCKET=${world.socket}`,
      `SANDBOXD_RUNC_ROOT=${world.root}`,
    ];
    await writeFile(
      join(world.dir, 'containers.conf'),
      `[engine]\nconmon_env_vars = ${JSON.stringify(vars)}\n`,
    );
    const load = await podman('load', '-i', await busyboxImageArchive(world.dir));
    assert.equal(load.code, 0, load.stderr);
    const tag = await podman('tag', 'localhost/latest:latest', 'localhost/busybox:latest');
    assert.equal(tag.code, 0, tag.stderr);
  });

  after(async () => {
    if (world) {
      await podman('rm', '-a', '-f');
      for (const pid of await conmonPidsUsing(world.dir)) process.kill(pid, 'SIGKILL');
      await world.close();
    }
  });

  it('podman run --rm busybox echo hi prints hi', { timeout: VM_MS }, async () => {
    const r = await podman('run', '--rm', '--network', 'none', 'busybox', 'echo', 'hi');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hi\n');
    await assertNothingLeft(world);
  });

  it("podman run sh -c 'exit 7' exits 7 (conmon reads the keeper's status)", { timeout: VM_MS }, async () => {
    const r = await podman('run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'exit 7');
    assert.equal(r.code, 7, r.stderr);
    await assertNothingLeft(world);
  });

  it('run -d, ps (Up), inspect (State.Pid is the keeper), exec, rm -f', { timeout: VM_MS }, async () => {
    const d = await podman('run', '-d', '--network', 'none', '--name', 'bg', 'busybox', 'sleep', '100000');
    assert.equal(d.code, 0, d.stderr);
    const ps = await podman('ps', '--format', '{{.Names}} {{.Status}}');
    assert.match(ps.stdout, /^bg Up/m);
    const pid = Number((await podman('inspect', '--format', '{{.State.Pid}}', 'bg')).stdout.trim());
    assert.match(await readFile(`/proc/${pid}/cmdline`, 'utf8'), /sandboxd-runc-keeper/);
    const e = await podman('exec', 'bg', 'sh', '-c', 'echo in-exec; exit 4');
    assert.equal(e.stdout, 'in-exec\n', e.stderr);
    assert.equal(e.code, 4);
    const rm = await podman('rm', '-f', 'bg');
    assert.equal(rm.code, 0, rm.stderr);
    await until('conmon gone', 30_000, async () =>
      (await conmonPidsUsing(world.dir)).length === 0 ? true : undefined,
    );
    await assertNothingLeft(world);
  });
});
