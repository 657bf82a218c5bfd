// Benchmark of sandboxd-runc: `sandboxd-runc run` of a bundle whose process is `true` (a VM booted, the
// container run, everything deleted) vs `sandboxctl run --rm` of it (the same daemon without the CLI and keeper)
// vs `runc run` of the same bundle on the host (the floor), in one run; and
// the keeper's RSS (the host process that stands for each container). Table, then one JSON line.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Table from 'cli-table3';
import { createBusyboxBundle } from '../src/image/index.js';

const run = promisify(execFile);
const quick = process.argv.includes('--quick');
const rounds = quick ? 1 : 3;
const DAEMON = fileURLToPath(new URL('../src/daemon/main.js', import.meta.url));
const RUNC_CLI = fileURLToPath(new URL('../src/oci/main.js', import.meta.url));
const SANDBOXCTL = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function startDaemon(dir: string, socket: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [DAEMON, '--state-dir', join(dir, 'state'), '--socket', socket, '--log-level', 'info'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('"msg":"ready"')) resolve(child);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`daemon exited ${code}:\n${out}`)));
  });
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

const dir = await mkdtemp(join(tmpdir(), 'sbx-bench-oci-'));
const socket = join(dir, 's.sock');
const daemon = await startDaemon(dir, socket);
try {
  const bundle = join(dir, 'bundle');
  await createBusyboxBundle(bundle, { args: ['true'] });
  const runc = (...args: string[]) =>
    run(process.execPath, [RUNC_CLI, '--root', join(dir, 'root'), '--sandboxd-socket', socket, ...args]);
  // `create` leaves the keeper running with the CLI's stdout/stderr: pipes would never reach their end (what
  // execFile waits for), so as conmon does, the keeper gets /dev/null for stdin and a file for its output.
  const createDetached = async (args: readonly string[]) => {
    const out = await open(join(dir, 'create.out'), 'w');
    try {
      const child = spawn(
        process.execPath,
        [RUNC_CLI, '--root', join(dir, 'root'), '--sandboxd-socket', socket, ...args],
        { stdio: ['ignore', out.fd, out.fd] },
      );
      const code = await new Promise<number | null>((resolve, reject) => {
        child.once('error', reject);
        child.once('exit', resolve);
      });
      if (code !== 0) {
        throw new Error(
          `sandboxd-runc ${args.join(' ')} exited ${code}: ${await readFile(join(dir, 'create.out'), 'utf8')}`,
        );
      }
    } finally {
      await out.close();
    }
  };
  const ours: number[] = [];
  const direct: number[] = [];
  const floor: number[] = [];
  // Interleaved, so that a change of load on the machine weighs on all three alike.
  for (let i = 0; i < rounds; i++) {
    ours.push(await timed(() => runc('run', '--bundle', bundle, `b${i}`)));
    direct.push(
      await timed(() =>
        run(process.execPath, [
          SANDBOXCTL,
          '--socket',
          socket,
          'run',
          '--rm',
          '-q',
          '--name',
          `s${i}`,
          bundle,
        ]),
      ),
    );
    floor.push(
      await timed(() => run('runc', ['--root', join(dir, 'runc-root'), 'run', '-b', bundle, `r${i}`])),
    );
  }
  // The keeper of a running container: its resident memory is the host cost per container besides the VM.
  const sleeper = join(dir, 'sleeper');
  await createBusyboxBundle(sleeper, { args: ['sleep', '1000'] });
  const pidFile = join(dir, 'keeper.pid');
  await createDetached(['create', '--bundle', sleeper, '--pid-file', pidFile, 'rss']);
  const keeper = Number(await readFile(pidFile, 'utf8'));
  await runc('start', 'rss');
  const status = await readFile(`/proc/${keeper}/status`, 'utf8');
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  await runc('delete', '--force', 'rss');

  const oursMs = Math.round(median(ours));
  const directMs = Math.round(median(direct));
  const floorMs = Math.round(median(floor) * 10) / 10;
  // The target: sandboxd-runc run within 1.10x of sandboxctl run (same daemon, same VM boot).
  const vsSandboxctl = Math.round((oursMs / directMs) * 100) / 100;
  const ratio = Math.round((oursMs / floorMs) * 10) / 10;
  const table = new Table({ head: ['what', 'median ms', `rounds`] });
  table.push(
    ['sandboxd-runc run (VM boot + container + delete)', oursMs, rounds],
    ['sandboxctl run --rm of the same bundle', directMs, rounds],
    ['sandboxd-runc / sandboxctl', vsSandboxctl, ''],
    ['runc run on the host (floor)', floorMs, rounds],
    ['keeper RSS (KiB)', rssKiB, 1],
  );
  process.stdout.write(`${table.toString()}\n`);
  process.stdout.write(
    `${JSON.stringify({ bench: 'oci', rounds, sandboxdRuncRunMs: oursMs, sandboxctlRunMs: directMs, vsSandboxctl, runcRunMs: floorMs, ratio, keeperRssKiB: rssKiB })}\n`,
  );
} finally {
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
  await rm(dir, { recursive: true, force: true });
}
