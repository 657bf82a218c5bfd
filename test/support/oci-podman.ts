// podman (Debian's 4.3.1 with conmon 2.1.6) with sandboxd-runc as its OCI runtime, for the tests: its own
// --root/--runroot under the world's temp dir, the busybox image built offline and `podman load`-ed, and
// conmon given the daemon's socket and our --root in its environment (podman 4.3 runs `delete` without its
// runtime flags). Shared by the test/oci.*.test.ts files that drive podman.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { promisify } from 'node:util';
import { assertNothingLeft, livePidsWhose, type OciWorld, openOciWorld, RUNC_CLI } from './oci.js';
import { busyboxImageArchive } from './oci-image.js';
import type { CliResult } from './processes.js';
import { until } from './vm.js';

const exec = promisify(execFile);

export interface Podman {
  /** Runs `podman <its flags> args…` to its end (never throws on a non-zero exit). */
  (...args: string[]): Promise<CliResult>;
  /** The full command line, for a shell (tmux). */
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv;
}

export async function openPodman(world: OciWorld, timeoutMs = 300_000): Promise<Podman> {
  // conmon execs the runtime itself: tsc writes main.js without the execute bit setup gives it.
  await chmod(RUNC_CLI, 0o755);
  const argv = [
    'podman',
    ...['--root', join(world.dir, 'podman-root'), '--runroot', join(world.dir, 'podman-run')],
    ...['--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file'],
    ...['--runtime', RUNC_CLI, '--runtime-flag', `sandboxd-socket=${world.socket}`],
    ...['--runtime-flag', `root=${world.root}`],
  ];
  const env = { ...process.env, CONTAINERS_CONF: join(world.dir, 'containers.conf') };
  const vars = [
    `PATH=${process.env.PATH}`,
    `SANDBOXD_SOCKET=${world.socket}`,
    `SANDBOXD_RUNC_ROOT=${world.root}`,
  ];
  await writeFile(env.CONTAINERS_CONF, `[engine]\nconmon_env_vars = ${JSON.stringify(vars)}\n`);
  const podman = (async (...args: string[]): Promise<CliResult> => {
    try {
      const r = await exec(argv[0]!, [...argv.slice(1), ...args], { timeout: timeoutMs, env });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return {
        code: typeof e.code === 'number' ? e.code : -1,
        stdout: e.stdout ?? '',
        stderr: e.stderr ?? '',
      };
    }
  }) as Podman;
  Object.assign(podman, { argv, env });
  const load = await podman('load', '-i', await busyboxImageArchive(world.dir));
  assert.equal(load.code, 0, load.stderr);
  const tag = await podman('tag', 'localhost/latest:latest', 'localhost/busybox:latest');
  assert.equal(tag.code, 0, tag.stderr);
  return podman;
}

/** conmon processes whose command line mentions `dir` (podman's runroot is under it). */
export function conmonPidsUsing(dir: string): Promise<number[]> {
  return livePidsWhose((cmd) => cmd.startsWith('/usr/bin/conmon') && cmd.includes(dir));
}

/** Removes every podman container and ends any conmon left (a failed test), before world.close(). */
export async function closePodman(world: OciWorld, podman: Podman | undefined): Promise<void> {
  if (podman) await podman('rm', '-a', '-f');
  for (const pid of await conmonPidsUsing(world.dir)) process.kill(pid, 'SIGKILL');
}

/** After a describe's cases: podman's containers and conmons, then the world (either may never have opened). */
export async function closePodmanWorld(
  world: OciWorld | undefined,
  podman: Podman | undefined,
): Promise<void> {
  if (!world) return;
  await closePodman(world, podman);
  await world.close();
}

export interface PodmanWorld {
  readonly world: OciWorld;
  /** podman, opened in before(); throws in a case if it never was. */
  readonly podman: Podman;
  /** Shorthand: `podman(...args)`. */
  p(...args: string[]): Promise<CliResult>;
}

/** For a describe: registers before() (a world, podman on it) and after() (both closed); the handles. */
export function usePodmanWorld(
  prefix: string,
  timeoutMs = 300_000,
  o: { daemonArgs?: readonly string[] } = {},
): PodmanWorld {
  let world: OciWorld | undefined;
  let podman: Podman | undefined;
  before(async () => {
    world = await openOciWorld(prefix, o);
    podman = await openPodman(world, timeoutMs);
  });
  after(() => closePodmanWorld(world, podman));
  const handles: PodmanWorld = {
    get world() {
      assert.ok(world, 'the world is open');
      return world;
    },
    get podman() {
      assert.ok(podman, 'podman is set up');
      return podman;
    },
    p: (...args) => handles.podman(...args),
  };
  return handles;
}

/** Waits until podman (conmon) saw `name` exit; its exit code. */
export async function podmanExitCode(podman: Podman, name: string, ms = 60_000): Promise<number> {
  const inspect = async (format: string) => (await podman('inspect', '--format', format, name)).stdout.trim();
  await until(`podman saw ${name} exit`, ms, async () =>
    (await inspect('{{.State.Status}}')) === 'exited' ? true : undefined,
  );
  return Number(await inspect('{{.State.ExitCode}}'));
}

/**
 * The host cgroup directories of the linux.cgroupsPath podman gave `name` (its bundle's config.json), worked out
 * here as runc's cgroupfs driver does for an absolute path: that path under every mounted cgroup hierarchy.
 */
export async function podmanCgroupDirs(podman: Podman, name: string): Promise<string[]> {
  const config = (await podman('inspect', '--format', '{{.OCIConfigPath}}', name)).stdout.trim();
  const spec = JSON.parse(await readFile(config, 'utf8')) as { linux?: { cgroupsPath?: string } };
  const path = spec.linux?.cgroupsPath;
  assert.ok(path?.startsWith('/'), `podman (cgroupfs) names an absolute cgroupsPath: ${path}`);
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .filter((l) => / - cgroup2? /.test(l))
    .map((l) => l.split(' ')[4]!);
  return mounts.map((m) => `${m}${path}`);
}

/** Which of `dirs` still exist. */
export async function existing(dirs: readonly string[]): Promise<string[]> {
  const found = await Promise.all(
    dirs.map((d) =>
      access(d).then(
        () => d,
        () => undefined,
      ),
    ),
  );
  return found.filter((d): d is string => d !== undefined);
}

/** `podman rm [-f] name` succeeds, its conmon ends, and nothing of the world's containers is left. */
export async function podmanRemove(
  world: OciWorld,
  podman: Podman,
  name: string,
  o: { force?: boolean } = {},
): Promise<void> {
  const cgroups = await podmanCgroupDirs(podman, name);
  const rm = await podman('rm', ...(o.force ? ['-f'] : []), name);
  assert.equal(rm.code, 0, rm.stderr);
  assert.deepEqual(await existing(cgroups), [], 'no host cgroup left');
  await until('conmon gone', 30_000, async () =>
    (await conmonPidsUsing(world.dir)).length === 0 ? true : undefined,
  );
  await assertNothingLeft(world);
}
