// Helpers for the sandboxd-runc tests: a real daemon in a temp dir, the CLI, a `runc spec` bundle with a busybox
// rootfs, a subreaper that waits on a keeper as conmon does, and the leftover checks every test ends with.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { mountsUnder, unmountAllUnder } from '../../src/actors/index.js';
import { type ApiClient, connectApi } from '../../src/api/index.js';
import { createBusyboxBundle } from '../../src/image/index.js';
import { type CliResult, DAEMON, exited, runCli, spawnUntil } from './processes.js';
import { qemuPidsUsing } from './vm.js';

const run = promisify(execFile);
export const RUNC_CLI = fileURLToPath(new URL('../../src/oci/main.js', import.meta.url));

export interface OciWorld {
  readonly dir: string;
  readonly socket: string;
  readonly root: string;
  api: ApiClient;
  daemon: ChildProcess;
  /** Starts the daemon again on the same state dir (after a kill -9). */
  restart(): Promise<void>;
  killDaemon9(): Promise<void>;
  close(): Promise<void>;
}

/** A daemon in a temp dir; `daemonArgs` are added to its command line (e.g. log limits), restarts included. */
export async function openOciWorld(
  prefix = 'sbx-runc-',
  o: { daemonArgs?: readonly string[] } = {},
): Promise<OciWorld> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const socket = join(dir, 's.sock');
  const start = async () => {
    const d = await spawnUntil(
      DAEMON,
      ['--state-dir', join(dir, 'state'), '--socket', socket, '--log-level', 'info', ...(o.daemonArgs ?? [])],
      /"msg":"ready"/,
      { timeoutMs: 120_000 },
    );
    return { child: d.child, api: await connectApi(socket) };
  };
  const first = await start();
  const world: OciWorld = {
    dir,
    socket,
    root: join(dir, 'root'),
    api: first.api,
    daemon: first.child,
    async restart() {
      const next = await start();
      world.api = next.api;
      world.daemon = next.child;
    },
    async killDaemon9() {
      world.api.close();
      world.daemon.kill('SIGKILL');
      await exited(world.daemon);
    },
    async close() {
      world.api.close();
      if (world.daemon.exitCode === null && world.daemon.signalCode === null) {
        world.daemon.kill('SIGTERM');
        await exited(world.daemon);
      }
      // Last resort for a failed test: our keepers and QEMUs (their command lines name our temp dir).
      for (const pid of [...(await keeperPidsUsing(dir)), ...(await qemuPidsUsing(dir))]) {
        process.kill(pid, 'SIGKILL');
      }
      await unmountAllUnder(dir).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return world;
}

export type RuncResult = CliResult;

/** The command line of `sandboxd-runc --root … --sandboxd-socket … args` (node and the script first). */
export function runcArgv(world: Pick<OciWorld, 'root' | 'socket'>, args: readonly string[]): string[] {
  return [process.execPath, RUNC_CLI, '--root', world.root, '--sandboxd-socket', world.socket, ...args];
}

/** `sandboxd-runc state id`, which must succeed, parsed. */
export async function runcState(
  world: Pick<OciWorld, 'root' | 'socket'>,
  id: string,
): Promise<Record<string, unknown> & { status: string; pid: number }> {
  const r = await runc(world, ['state', id]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** Runs `sandboxd-runc --root … --sandboxd-socket … args`; stdin from `input` (default: none). */
export function runc(
  world: Pick<OciWorld, 'root' | 'socket'>,
  args: readonly string[],
  o: { input?: string; timeoutMs?: number; global?: readonly string[]; untilExit?: boolean } = {},
): Promise<RuncResult> {
  return runCli(
    RUNC_CLI,
    ['--root', world.root, '--sandboxd-socket', world.socket, ...(o.global ?? []), ...args],
    {
      timeoutMs: o.timeoutMs ?? 240_000,
      untilExit: o.untilExit === true,
      ...(o.input !== undefined ? { input: o.input } : {}),
    },
  );
}

/** A bundle as `runc spec` writes it (its process changed to `args`, no terminal), rootfs from busybox. */
export async function runcSpecBundle(dir: string, args: readonly string[]): Promise<string> {
  const scratch = `${dir}.rootfs`;
  await createBusyboxBundle(scratch);
  await run('mkdir', ['-p', dir]);
  await run('runc', ['spec'], { cwd: dir });
  await rename(join(scratch, 'rootfs'), join(dir, 'rootfs'));
  await rm(scratch, { recursive: true, force: true });
  const spec = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  spec.process.args = [...args];
  spec.process.terminal = false;
  await writeFile(join(dir, 'config.json'), JSON.stringify(spec, null, 2));
  return dir;
}

/**
 * `sandboxd-runc create` under a subreaper (python3's prctl), as conmon runs it: the keeper is reparented to it
 * and the subreaper reports the keeper's wait status. Lines: `created <pid>` then `exit <code>`.
 */
export function createUnderSubreaper(
  world: Pick<OciWorld, 'root' | 'socket'>,
  args: readonly string[],
  stdout: string,
): { child: ChildProcess; created: Promise<number>; exit: Promise<number> } {
  const script = `
import ctypes, os, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
out = open(sys.argv[1], 'wb')
err = open(sys.argv[1] + '.err', 'w+b')
# The keeper inherits stdout and stderr: files, so that nothing here waits for their end.
r = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
if r.returncode != 0:
    err.seek(0)
    print('failed', r.returncode, err.read().decode().strip().replace('\\n', ' '), flush=True)
    sys.exit(0)
pidfile = sys.argv[sys.argv.index('--pid-file') + 1]
pid = int(open(pidfile).read())
print('created', pid, flush=True)
_, status = os.waitpid(pid, 0)
print('exit', os.waitstatus_to_exitcode(status), flush=True)
`;
  const child = spawn('python3', ['-c', script, stdout, ...runcArgv(world, args)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let text = '';
  const lines: ((l: string) => void)[] = [];
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    text += d;
    for (;;) {
      const nl = text.indexOf('\n');
      if (nl < 0) break;
      const line = text.slice(0, nl);
      text = text.slice(nl + 1);
      for (const l of lines) l(line);
    }
  });
  const next = (prefix: string) =>
    new Promise<number>((resolve, reject) => {
      lines.push((l) => {
        if (l.startsWith(prefix)) resolve(Number(l.split(' ')[1]));
        else if (l.startsWith('failed')) reject(new Error(`create ${l}`));
      });
      child.once('exit', () => reject(new Error(`subreaper exited before "${prefix}"`)));
    });
  return { child, created: next('created'), exit: next('exit') };
}

/** Live (not zombie) processes whose NUL-separated command line passes `test`. */
export async function livePidsWhose(test: (cmdline: string) => boolean): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (test(cmdline) && !/\) Z /.test(stat)) pids.push(Number(entry));
  }
  return pids;
}

/** Live keeper processes whose command line mentions `dir` (the daemon socket is under it). */
export function keeperPidsUsing(dir: string): Promise<number[]> {
  return livePidsWhose((cmd) => cmd.includes('sandboxd-runc-keeper') && cmd.includes(dir));
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = (() => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return '';
    }
  })();
  return !/\) Z /.test(stat);
}

/** Nothing of `world`'s containers left: no keeper, no QEMU, no mount, no record, no sandbox. */
export async function assertNothingLeft(world: OciWorld): Promise<void> {
  assert.deepEqual(await keeperPidsUsing(world.dir), [], 'no keeper left');
  assert.deepEqual(await qemuPidsUsing(world.dir), [], 'no QEMU left');
  assert.deepEqual(await mountsUnder(world.dir), [], 'no mount left');
  assert.deepEqual(await readdir(world.root).catch(() => []), [], 'no record left under --root');
  assert.deepEqual(await world.api.call('sandbox.list', {}), [], 'no sandbox left');
}
