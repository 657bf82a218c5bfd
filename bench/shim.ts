// Benchmark of the containerd shim: `ctr run --rm … true` through containerd-shim-sandboxd-v1 (a VM booted,
// the container run, everything deleted) vs `sandboxctl run --rm` of the same rootfs (the same work without
// containerd and the shim) vs `ctr run --rm` with runc (Debian's containerd-shim-runc-v2: the host floor),
// interleaved round by round in one run; then the shim server's PSS (/proc/PID/smaps_rollup) with 1 and with
// more pods running, and the runc shim's PSS for one task. Table, then one JSON line. `--quick`: 1 round.
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Table from 'cli-table3';
import { createBusyboxBundle } from '../src/image/index.js';
import { startShimWorld, taskStatus } from '../test/support/containerd-world.js';
import { CLI } from '../test/support/processes.js';

const run = promisify(execFile);
const quick = process.argv.includes('--quick');
const rounds = quick ? 1 : 5;
const pods = quick ? 2 : 3;
const RUNC = 'io.containerd.runc.v2';
const SANDBOXD = 'io.containerd.sandboxd.v1';
const IMAGE = 'docker.io/library/busybox:latest';
const IMAGE_TAR = join(import.meta.dirname, '..', '..', 'scripts', 'test-image.sh');

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function timed(what: string, fn: () => Promise<{ code: number; stderr: string }>): Promise<number> {
  const t0 = performance.now();
  const r = await fn();
  const ms = performance.now() - t0;
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${r.stderr}`);
  return ms;
}

/** Proportional set size of a process, KiB (shared pages split among the processes that map them). */
async function pssKiB(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  return Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1] ?? Number.NaN);
}

async function parentOf(pid: number): Promise<number> {
  return Number(/^PPid:\s+(\d+)/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1]);
}

const world = await startShimWorld();
const loadBefore = loadavg()[0]!;
try {
  // sandboxctl's bundle gets the image's own layer as its rootfs: the same files the shim mounts.
  const bundle = join(world.dir, 'bundle');
  await createBusyboxBundle(bundle, { args: ['true'] });
  await rm(join(bundle, 'rootfs'), { recursive: true });
  await mkdir(join(bundle, 'rootfs'));
  const tar = (await run('bash', [IMAGE_TAR])).stdout.trim();
  await run('bash', [
    '-c',
    `tar -xOf "$1" --wildcards '*/layer.tar' | tar -x -C "$2"`,
    '-',
    tar,
    join(bundle, 'rootfs'),
  ]);
  const sandboxctl = (args: readonly string[]) =>
    run(process.execPath, [CLI, '--socket', world.socket, ...args]).then(
      (r) => ({ code: 0, stderr: r.stderr }),
      (err: { code?: number; stderr?: string }) => ({ code: err.code ?? -1, stderr: err.stderr ?? '' }),
    );

  const shim: number[] = [];
  const direct: number[] = [];
  const floor: number[] = [];
  for (let i = 0; i < rounds; i++) {
    shim.push(
      await timed('ctr run (shim)', () =>
        world.ctr(['run', '--rm', '--runtime', SANDBOXD, IMAGE, `s${i}`, 'true']),
      ),
    );
    direct.push(
      await timed('sandboxctl run', () =>
        sandboxctl(['run', '--rm', '-q', '--name', `d${i}`, bundle, 'true']),
      ),
    );
    floor.push(
      await timed('ctr run (runc)', () =>
        world.ctr(['run', '--rm', '--runtime', RUNC, IMAGE, `r${i}`, 'true']),
      ),
    );
  }

  // Memory: one shim server serves every pod of this containerd, so its PSS with one pod is what the first
  // pod costs and the growth per further pod is what each one adds.
  const pss: number[] = [];
  for (let p = 1; p <= pods; p++) {
    const r = await world.ctr(['run', '-d', '--runtime', SANDBOXD, IMAGE, `m${p}`, 'sleep', '100000']);
    if (r.code !== 0) throw new Error(`ctr run -d m${p}: ${r.stderr}`);
    await taskStatus(world, `m${p}`, 'RUNNING');
    const pid = await world.shimPid();
    if (pid === undefined) throw new Error('no shim server pid file');
    // The median of a few samples: a V8 collection in between moves a single one by megabytes.
    const samples: number[] = [];
    for (let k = 0; k < 5; k++) {
      samples.push(await pssKiB(pid));
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    pss.push(median(samples));
  }
  const r = await world.ctr(['run', '-d', '--runtime', RUNC, IMAGE, 'mr', 'sleep', '100000']);
  if (r.code !== 0) throw new Error(`ctr run -d mr: ${r.stderr}`);
  const runcShimPss = await pssKiB(await parentOf(await taskStatus(world, 'mr', 'RUNNING')));

  const shimMs = Math.round(median(shim));
  const directMs = Math.round(median(direct));
  const floorMs = Math.round(median(floor));
  const ratio = Math.round((shimMs / directMs) * 100) / 100;
  // Each round's pair ran back to back: the median of their ratios is steadier than the ratio of medians
  // when the machine's load drifts during the run.
  const pairRatio = Math.round(median(shim.map((ms, i) => ms / direct[i]!)) * 100) / 100;
  const firstPodPssKiB = pss[0]!;
  const perPodPssKiB = Math.round((pss[pss.length - 1]! - pss[0]!) / (pss.length - 1));
  const amortisedPssKiB = Math.round(pss[pss.length - 1]! / pss.length);
  const table = new Table({ head: ['what', 'median ms', 'rounds / pods'] });
  table.push(
    ['ctr run --rm … true, sandboxd shim (VM + container + delete)', shimMs, rounds],
    ['sandboxctl run --rm of the same rootfs', directMs, rounds],
    ['ctr run --rm … true, runc shim (host floor)', floorMs, rounds],
    ['shim / sandboxctl (ratio of medians)', ratio, ''],
    ['shim / sandboxctl (median of each round’s ratio)', pairRatio, rounds],
    ['shim server PSS with 1 pod (KiB)', firstPodPssKiB, 1],
    ['shim server PSS added per further pod (KiB)', perPodPssKiB, pods],
    [`shim server PSS per pod with ${pods} pods (KiB)`, amortisedPssKiB, pods],
    ['containerd-shim-runc-v2 PSS, 1 task (KiB)', runcShimPss, 1],
  );
  process.stdout.write(`${table.toString()}\n`);
  process.stdout.write(
    `${JSON.stringify({
      bench: 'shim',
      rounds,
      shimRunMs: shimMs,
      sandboxctlRunMs: directMs,
      runcRunMs: floorMs,
      ratio,
      pairRatio,
      shimPssKiB: pss,
      firstPodPssKiB,
      perPodPssKiB,
      amortisedPssKiB,
      runcShimPssKiB: runcShimPss,
      load1: [Math.round(loadBefore * 100) / 100, Math.round(loadavg()[0]! * 100) / 100],
      samples: {
        shim: shim.map(Math.round),
        sandboxctl: direct.map(Math.round),
        runc: floor.map(Math.round),
      },
    })}\n`,
  );
} finally {
  await world.stop();
}
