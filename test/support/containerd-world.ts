// One world for a shim test file: a real sandboxd daemon, a real containerd that finds
// containerd-shim-sandboxd-v1 on its PATH, the busybox image imported. stop() ends what the file caused
// (containerd, the shim server by its pid file, the daemon) and fails when anything is left: a QEMU, a
// shim server, a socket under the temp dirs.
import type { ChildProcess } from 'node:child_process';
import { execFile, spawn } from 'node:child_process';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { mountsUnder, unmountAllUnder } from '../../src/actors/index.js';
import { pidFileOf, shimSocketPath } from '../../src/shim/index.js';
import { type Containerd, type CtrResult, startContainerd, until } from './containerd.js';
import { CLI, DAEMON, spawnUntil } from './processes.js';
import { qemuPidsUsing } from './vm.js';

const run = promisify(execFile);
const SHIM = fileURLToPath(new URL('../../src/shim/main.js', import.meta.url));
const IMAGE_SCRIPT = fileURLToPath(new URL('../../../scripts/test-image.sh', import.meta.url));

export const RUNTIME = 'io.containerd.sandboxd.v1';
export const IMAGE = 'docker.io/library/busybox:latest';
/** CRI's sandbox_image in a CRI world (scripts/test-image.sh pause). */
export const PAUSE_IMAGE = 'docker.io/sandboxd/pause:1';
export const VM_MS = 300_000;

export interface ShimWorld {
  readonly dir: string;
  /** sandboxd's API socket. */
  readonly socket: string;
  readonly ctrd: Containerd;
  /** The shim server's socket for this containerd. */
  readonly shimSocket: string;
  daemon: ChildProcess;
  ctr(args: readonly string[], options?: { timeoutMs?: number; input?: string }): Promise<CtrResult>;
  /** ctr with a pseudo-terminal as its stdin/stdout (for `-t`); stdout has the terminal's \r\n. */
  ctrTty(args: readonly string[], options?: { timeoutMs?: number }): Promise<CtrResult>;
  /** `sandboxctl call method [params]` against the daemon: its JSON answer. */
  call<T>(method: string, params?: Record<string, unknown>): Promise<T>;
  /** The shim server's own log (its stderr), for assertion messages. */
  shimLog(): Promise<string>;
  /** The shim server's pid, from its pid file (undefined when none serves). */
  shimPid(): Promise<number | undefined>;
  /** Starts the daemon on the same state dir and socket (after a kill). */
  restartDaemon(): Promise<void>;
  stop(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function socketsUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const name of await readdir(d).catch((): string[] => [])) {
      const p = join(d, name);
      const st = await lstat(p).catch(() => undefined);
      if (st?.isSocket()) found.push(p);
      else if (st?.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return found;
}

function runTty(line: string, timeoutMs: number): Promise<CtrResult> {
  return new Promise((resolve, reject) => {
    const c = spawn('script', ['-qfec', line, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    c.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`${line} timed out\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    c.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, signal, stdout, stderr });
    });
  });
}

/** Live shim servers (`… serve`) of the containerd at `address`, from /proc. */
async function shimServersFor(address: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv.includes('serve') && argv.includes(address) && argv.some((a) => a.endsWith('shim/main.js'))) {
      if (alive(Number(entry))) pids.push(Number(entry));
    }
  }
  return pids;
}

/** Kills and deletes every task and container of the test's containerd (all namespaces). */
async function deleteTasks(world: ShimWorld): Promise<void> {
  const namespaces = (await world.ctr(['namespaces', 'ls', '-q'])).stdout.split('\n').filter(Boolean);
  for (const ns of namespaces) {
    const n = ['--namespace', ns];
    for (const id of (await world.ctr([...n, 'task', 'ls', '-q'])).stdout.split('\n').filter(Boolean)) {
      await world.ctr([...n, 'task', 'kill', '--all', '-s', 'SIGKILL', id]);
      const d = await world.ctr([...n, 'task', 'delete', '--force', id]);
      if (d.code !== 0) throw new Error(`ctr task delete ${id}: ${d.stderr.trim()}`);
    }
    for (const id of (await world.ctr([...n, 'containers', 'ls', '-q'])).stdout.split('\n').filter(Boolean)) {
      const d = await world.ctr([...n, 'containers', 'delete', id]);
      if (d.code !== 0) throw new Error(`ctr containers delete ${id}: ${d.stderr.trim()}`);
    }
  }
}

/** `cri`: containerd's CRI plugin on with these settings, the test images imported for it too (`k8s.io`). */
export async function startShimWorld(options: { cri?: string } = {}): Promise<ShimWorld> {
  const dir = await mkdtemp(join(tmpdir(), 'shim-e2e-'));
  const socket = join(dir, 'sandboxd.sock');
  const stateDir = join(dir, 'state');
  const startDaemon = async () =>
    (
      await spawnUntil(DAEMON, ['--state-dir', stateDir, '--socket', socket], /"msg":"ready"/, {
        timeoutMs: 120_000,
      })
    ).child;
  const daemon = await startDaemon();
  try {
    return await withContainerd(dir, socket, daemon, startDaemon, options.cri);
  } catch (err) {
    // A world half made is ended here: the caller has no stop() to call.
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function withContainerd(
  dir: string,
  socket: string,
  daemon: ChildProcess,
  startDaemon: () => Promise<ChildProcess>,
  cri: string | undefined,
): Promise<ShimWorld> {
  // containerd finds the shim on its PATH by the runtime's name, as it would /usr/local/bin's.
  const bin = join(dir, 'bin');
  await mkdir(bin);
  await chmod(SHIM, 0o755); // tsc writes it 0644; setup.sh does the same for /usr/local/bin's link
  await symlink(SHIM, join(bin, 'containerd-shim-sandboxd-v1'));
  const socketDir = join(dir, 's');
  const ctrd = await startContainerd({
    env: { PATH: `${bin}:${process.env.PATH}`, SANDBOXD_SOCKET: socket, SANDBOXD_SHIM_SOCKET_DIR: socketDir },
    ...(cri === undefined ? {} : { cri: true, config: cri }),
  });
  const shimSocket = join(socketDir, shimSocketPath(ctrd.address).split('/').pop() as string);
  const imports: [string[], string][] = [[[], 'busybox']];
  if (cri !== undefined) imports.push([['-n', 'k8s.io'], 'busybox'], [['-n', 'k8s.io'], 'pause']);
  for (const [ns, kind] of imports) {
    const tar = (await run('bash', [IMAGE_SCRIPT, kind])).stdout.trim();
    const imported = await ctrd.ctr([...ns, 'images', 'import', tar]);
    if (imported.code !== 0) {
      await ctrd.stop();
      throw new Error(`ctr images import ${kind}: ${imported.stderr}`);
    }
  }

  const shimPid = async () => {
    const text = await readFile(pidFileOf(shimSocket), 'utf8').catch(() => '');
    const pid = Number.parseInt(text, 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  };
  const world: ShimWorld = {
    dir,
    socket,
    ctrd,
    shimSocket,
    daemon,
    // Shorter than a case's VM_MS, so a hung ctr fails with the shim's log rather than a bare timeout.
    ctr: (args, options) =>
      ctrd.ctr(args, { timeoutMs: VM_MS - 30_000, ...options }).catch(async (err: Error) => {
        throw new Error(`${err.message}\n--- shim log (tail) ---\n${(await world.shimLog()).slice(-6000)}`);
      }),
    ctrTty(args, options) {
      // ctr -t wants a terminal on its stdin: script(1) gives it one and exits with ctr's status.
      const q = (a: string) => `'${a.replaceAll("'", "'\\''")}'`;
      const line = ['ctr', '--address', ctrd.address, ...args].map(q).join(' ');
      return runTty(line, options?.timeoutMs ?? VM_MS - 30_000);
    },
    async call<T>(method: string, params?: Record<string, unknown>) {
      const args = [CLI, '--socket', socket, 'call', method];
      if (params) args.push(JSON.stringify(params));
      return JSON.parse((await run(process.execPath, args)).stdout) as T;
    },
    shimLog: () => readFile(`${shimSocket}.log`, 'utf8').catch(() => ''),
    shimPid,
    async restartDaemon() {
      world.daemon = await startDaemon();
    },
    async stop() {
      // Every step runs whatever the one before did (an EBUSY rm must not leave the shim server, the daemon
      // and QEMU behind); what is found left is cleaned up, then reported as the failure it is.
      const left: string[] = [];
      const step = async (what: string, f: () => Promise<void>) => {
        try {
          await f();
        } catch (err) {
          left.push(`${what}: ${(err as Error).message}`);
        }
      };
      await step('tasks', () => deleteTasks(world));
      await step('containerd', () => ctrd.stop());
      // The shim server outlives containerd by design (containerd reconnects to it): end it by its pid.
      await step('shim server', async () => {
        const pid = await shimPid();
        if (pid === undefined || !alive(pid)) return;
        process.kill(pid, 'SIGTERM');
        await until('the shim server to exit', () => (alive(pid) ? undefined : true), 10_000).catch(() => {
          left.push(`shim server ${pid} ignored SIGTERM`);
          process.kill(pid, 'SIGKILL');
        });
      });
      await step('sandboxes', async () => {
        if (world.daemon.exitCode !== null || world.daemon.signalCode !== null) return;
        for (const s of await world.call<{ id: string }[]>('sandbox.list')) {
          left.push(`sandbox ${s.id}`);
          await world.call('sandbox.delete', { id: s.id, force: true });
        }
      });
      await step('daemon', async () => {
        const d = world.daemon;
        if (d.exitCode !== null || d.signalCode !== null) return;
        d.kill('SIGTERM');
        await new Promise((r) => d.once('exit', r));
      });
      await step('qemu', async () => {
        for (const q of await qemuPidsUsing(dir)) {
          left.push(`qemu ${q}`);
          process.kill(q, 'SIGKILL');
        }
      });
      await step('shim servers', async () => {
        for (const p of await shimServersFor(ctrd.address)) {
          left.push(`shim server ${p}`);
          process.kill(p, 'SIGKILL');
        }
      });
      await step('sockets', async () => {
        for (const s of await socketsUnder(dir)) left.push(`socket ${s}`);
      });
      await step('mounts', async () => {
        const mounted = [...(await mountsUnder(dir)), ...(await mountsUnder(ctrd.dir))];
        if (mounted.length > 0) left.push(`mounts ${mounted.join(', ')}`);
        await unmountAllUnder(dir);
      });
      await step('temp dir', () => rm(dir, { recursive: true, force: true }));
      if (left.length > 0) throw new Error(`left behind: ${left.join('; ')}`);
    },
  };
  return world;
}

/** Polls `ctr task ls` until task `id` shows `status` (RUNNING, PAUSED, STOPPED); returns its pid. */
export async function taskStatus(world: ShimWorld, id: string, status: string): Promise<number> {
  return until(
    `task ${id} ${status}`,
    async () => {
      const r = await world.ctr(['task', 'ls']);
      const row = r.stdout
        .split('\n')
        .map((l) => l.trim().split(/\s+/))
        .find((f) => f[0] === id);
      return row && row[2] === status ? Number(row[1]) : undefined;
    },
    60_000,
  );
}
