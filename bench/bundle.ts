// Benchmark of container create + start by rootfs size: the rootfs is shared into the VM by a bind mount, so a
// 500 MiB rootfs should cost what a 1 MiB one does. Debian's runc running the same bundles on the host is the
// floor (no VM, no share). Both sides run each size in turn, round by round, on the same machine load.
import { execFile } from 'node:child_process';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Table from 'cli-table3';
import { pino } from 'pino';
import { createRuntime } from '../src/actors/index.js';
import { createGrpcAgent } from '../src/agent/index.js';
import { createQemuHypervisor } from '../src/hypervisor/index.js';
import { createBusyboxBundle, ensureGuestImage } from '../src/image/index.js';
import { openLevelEventStore } from '../src/store/index.js';

const run = promisify(execFile);
const quick = process.argv.includes('--quick');
const rounds = quick ? 1 : 3;
const logger = pino({ level: 'warn' }, pino.destination(2));
const SIZES = [
  { name: '1 MiB', padMiB: 0 },
  { name: '500 MiB', padMiB: 500 },
] as const;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const round1 = (value: number) => Math.round(value * 10) / 10;

/**
 * A bundle as `runc spec` makes it around a busybox rootfs (about 1 MiB), padded with `padMiB` of written
 * (not sparse) data, its process `true`: the same directory is run by sandboxd and by runc.
 */
async function makeBundle(dir: string, padMiB: number): Promise<void> {
  await createBusyboxBundle(dir, { args: ['true'] });
  const specDir = await mkdtemp(join(tmpdir(), 'sbx-bench-spec-'));
  try {
    await run('runc', ['spec', '--bundle', specDir]);
    const spec = JSON.parse(await readFile(join(specDir, 'config.json'), 'utf8'));
    spec.process.args = ['true'];
    spec.process.terminal = false;
    await writeFile(join(dir, 'config.json'), JSON.stringify(spec, null, 2));
  } finally {
    await rm(specDir, { recursive: true, force: true });
  }
  if (padMiB === 0) return;
  const chunk = Buffer.alloc(8 << 20, 0x5a);
  const file = await open(join(dir, 'rootfs', 'pad.bin'), 'w');
  try {
    for (let written = 0; written < padMiB << 20; written += chunk.length) {
      await file.write(chunk, 0, Math.min(chunk.length, (padMiB << 20) - written));
    }
  } finally {
    await file.close();
  }
}

async function main(): Promise<void> {
  const image = await ensureGuestImage({ logger });
  const work = await mkdtemp(join(tmpdir(), 'sbx-bench-bundle-'));
  const hypervisor = createQemuHypervisor({ logger });
  const agent = createGrpcAgent({ logger });
  const store = await openLevelEventStore(join(work, 'log'));
  const accel = await hypervisor.accel();
  const runtime = await createRuntime({
    store,
    hypervisor,
    agent,
    stateDir: join(work, 'state'),
    image: () => Promise.resolve(image),
    logger,
  });
  const runcRoot = join(work, 'runc-root');
  const sandbox: Record<string, number[]> = {};
  const runc: Record<string, number[]> = {};
  try {
    for (const size of SIZES) {
      await makeBundle(join(work, size.name.replace(' ', '')), size.padMiB);
      sandbox[size.name] = [];
      runc[size.name] = [];
    }
    await runtime.createSandbox('bench', {});
    await runtime.startSandbox('bench');
    // One warm-up container: the guest's first crun start pays for page cache and module loads.
    await runtime.createContainer({ sandboxId: 'bench', id: 'warm', bundle: join(work, '1MiB') });
    await runtime.startContainer('bench', 'warm');
    await runtime.waitContainer('bench', 'warm');
    await runtime.deleteContainer('bench', 'warm');
    for (let round = 0; round < rounds; round++) {
      for (const size of SIZES) {
        const bundle = join(work, size.name.replace(' ', ''));
        const id = `c${round}-${size.padMiB}`;
        let t = performance.now();
        await runtime.createContainer({ sandboxId: 'bench', id, bundle });
        await runtime.startContainer('bench', id);
        sandbox[size.name]!.push(performance.now() - t);
        await runtime.waitContainer('bench', id);
        await runtime.deleteContainer('bench', id);
        // runc: create + start of the same bundle (`run` waits for `true` too, which costs it ~nothing).
        t = performance.now();
        await run('runc', ['--root', runcRoot, 'run', '--bundle', bundle, `bench-${id}`]);
        runc[size.name]!.push(performance.now() - t);
      }
    }
    const [small, large] = SIZES.map((s) => median(sandbox[s.name]!)) as [number, number];
    const [runcSmall, runcLarge] = SIZES.map((s) => median(runc[s.name]!)) as [number, number];
    const ratio = large / small;
    const runs = (values: number[]) => values.map((v) => v.toFixed(0)).join(', ');
    const table = new Table({ head: ['measure', 'median', 'runs (ms)'] });
    for (const size of SIZES) {
      table.push([
        `sandboxd container create + start, ${size.name} rootfs`,
        `${median(sandbox[size.name]!).toFixed(0)} ms`,
        runs(sandbox[size.name]!),
      ]);
      table.push([
        `runc run on the host (floor), ${size.name} rootfs`,
        `${median(runc[size.name]!).toFixed(0)} ms`,
        runs(runc[size.name]!),
      ]);
    }
    table.push(['ratio 500 MiB / 1 MiB, sandboxd (target ≤ 1.2)', ratio.toFixed(3), '']);
    table.push(['ratio 500 MiB / 1 MiB, runc', (runcLarge / runcSmall).toFixed(3), '']);
    table.push(['sandboxd / runc, 1 MiB', (small / runcSmall).toFixed(2), '']);
    console.log(
      `container create + start by rootfs size, accel ${accel}${quick ? ' (quick)' : ''}, ${rounds} rounds`,
    );
    console.log(table.toString());
    console.log(
      JSON.stringify({
        bench: 'bundle',
        accel,
        quick,
        rounds,
        sandboxd_1mib_ms: round1(small),
        sandboxd_500mib_ms: round1(large),
        runc_1mib_ms: round1(runcSmall),
        runc_500mib_ms: round1(runcLarge),
        ratio: Math.round(ratio * 1000) / 1000,
        target_ratio: 1.2,
        runc_ratio: Math.round((runcLarge / runcSmall) * 1000) / 1000,
      }),
    );
  } finally {
    await runtime.deleteSandbox('bench', { force: true }).catch(() => undefined);
    await runtime.shutdown();
    await hypervisor.close();
    await agent.close();
    await store.close();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
