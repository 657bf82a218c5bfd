// Benchmark of the guest image: cold build vs the no-change path, and boot-to-node under TCG vs a bare kernel boot.
import { execFileSync, spawn } from 'node:child_process';
import {
  copyFile,
  cp,
  link,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Table from 'cli-table3';
import { pino } from 'pino';
import type { GuestImagePaths } from '../src/hypervisor/index.js';
import {
  busyboxPath,
  createBusyboxBundle,
  defaultImageCacheDir,
  ensureGuestImage,
  guestContract,
} from '../src/image/index.js';

const quick = process.argv.includes('--quick');
const bootRounds = quick ? 1 : 3;
const fastRounds = quick ? 20 : 100;
const logger = pino({ level: 'warn' }, pino.destination(2));
const projectDir = join(import.meta.dirname, '..', '..');

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** A temp cache seeded with the shared kernel .deb, and a frozen copy of the project. */
async function seed(cacheDir: string, snapshot: string): Promise<void> {
  const shared = join(defaultImageCacheDir(), 'downloads');
  await mkdir(join(cacheDir, 'downloads'), { recursive: true });
  for (const deb of (await readdir(shared).catch(() => [] as string[])).filter((n) => n.endsWith('.deb'))) {
    await link(join(shared, deb), join(cacheDir, 'downloads', deb)).catch(() =>
      copyFile(join(shared, deb), join(cacheDir, 'downloads', deb)),
    );
  }
  await cp(join(projectDir, 'src'), join(snapshot, 'src'), { recursive: true });
  await cp(join(projectDir, 'proto'), join(snapshot, 'proto'), { recursive: true }).catch(() => undefined);
  await copyFile(join(projectDir, 'package.json'), join(snapshot, 'package.json'));
  await symlink(join(projectDir, 'node_modules'), join(snapshot, 'node_modules'));
}

/** The GUEST.md probe: same kernel, an initrd whose init powers off at once. */
async function bareInitrd(dir: string): Promise<string> {
  const root = join(dir, 'bare');
  await mkdir(join(root, 'bin'), { recursive: true });
  await copyFile(busyboxPath(), join(root, 'bin/busybox'));
  await symlink('busybox', join(root, 'bin/sh'));
  await writeFile(join(root, 'init'), '#!/bin/sh\n/bin/busybox poweroff -f\n', { mode: 0o755 });
  const out = join(dir, 'bare.gz');
  execFileSync('sh', ['-c', `cd "${root}" && find . | cpio -o -H newc --quiet | gzip > "${out}"`]);
  return out;
}

/** Boots under TCG; resolves with the wall time to `marker` on the console (or to exit when none) and to exit. */
async function boot(
  image: GuestImagePaths,
  initrd: string,
  dir: string,
  append: string,
  marker?: string,
): Promise<{ markerMs: number; exitMs: number }> {
  const consoleLog = join(dir, `console-${Math.random().toString(36).slice(2)}.log`);
  const share = join(dir, 'share');
  await mkdir(share, { recursive: true });
  const started = performance.now();
  const child = spawn(
    'qemu-system-x86_64',
    [
      ...['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot'],
      ...['-accel', 'tcg', '-cpu', 'max', '-m', '512', '-smp', '2'],
      ...['-kernel', image.kernel, '-initrd', initrd, '-serial', `file:${consoleLog}`],
      ...['-append', `${guestContract.baseKernelParams.join(' ')} ${append}`],
      ...['-fsdev', `local,id=fs0,path=${image.rootDir},security_model=none,readonly=on`],
      ...['-device', `virtio-9p-pci,fsdev=fs0,mount_tag=${guestContract.rootShareTag}`],
      ...['-fsdev', `local,id=fs1,path=${share},security_model=none`],
      ...['-device', `virtio-9p-pci,fsdev=fs1,mount_tag=${guestContract.sharedShareTag}`],
      ...['-device', 'virtio-serial-pci'],
      ...['-chardev', `socket,id=ch0,path=${join(dir, 'agent.sock')},server=on,wait=off`],
      ...['-device', `virtserialport,chardev=ch0,name=${guestContract.agentPortName}`],
    ],
    { stdio: 'ignore' },
  );
  let markerMs = Number.NaN;
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  let done = false;
  void exited.then(() => {
    done = true;
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), 180_000);
  while (!done) {
    if (marker && Number.isNaN(markerMs)) {
      const text = await readFile(consoleLog, 'utf8').catch(() => '');
      if (text.includes(marker)) markerMs = performance.now() - started;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  clearTimeout(killer);
  const exitMs = performance.now() - started;
  await rm(consoleLog, { force: true });
  return { markerMs: marker ? markerMs : exitMs, exitMs };
}

const work = await mkdtemp(join(tmpdir(), 'sandboxd-bench-image-'));
try {
  const cacheDir = join(work, 'cache');
  const snapshot = join(work, 'snapshot');
  await seed(cacheDir, snapshot);

  let started = performance.now();
  await ensureGuestImage({ cacheDir, projectDir: snapshot, logger });
  const coldMs = performance.now() - started;
  const fast: number[] = [];
  for (let i = 0; i < fastRounds; i++) {
    started = performance.now();
    await ensureGuestImage({ cacheDir, projectDir: snapshot, logger });
    fast.push(performance.now() - started);
  }
  const fastMs = median(fast);

  const image = await ensureGuestImage({ logger });
  const bare = await bareInitrd(work);
  // The selftest then also runs one container with crun from the share.
  await createBusyboxBundle(join(work, 'share', guestContract.selftest.bundleDir), { args: ['true'] });
  const bareRuns: number[] = [];
  const nodeRuns: number[] = [];
  const offRuns: number[] = [];
  for (let i = 0; i < bootRounds; i++) {
    bareRuns.push((await boot(image, bare, work, '')).exitMs);
    const run = await boot(image, image.initrd, work, 'sandboxd.selftest=1', 'node.version: v');
    nodeRuns.push(run.markerMs);
    offRuns.push(run.exitMs);
  }
  const bareMs = median(bareRuns);
  const nodeMs = median(nodeRuns);
  const offMs = median(offRuns);

  const table = new Table({ head: ['measure', 'ours', 'baseline', 'ratio'] });
  table.push(
    [
      'ensureGuestImage, nothing changed (median)',
      `${fastMs.toFixed(1)} ms`,
      `cold build ${coldMs.toFixed(0)} ms`,
      (fastMs / coldMs).toFixed(4),
    ],
    [
      'boot → node runs in the guest (TCG)',
      `${nodeMs.toFixed(0)} ms`,
      `bare boot+poweroff ${bareMs.toFixed(0)} ms`,
      (nodeMs / bareMs).toFixed(2),
    ],
    [
      'boot → selftest (crun, node) → power off',
      `${offMs.toFixed(0)} ms`,
      `bare boot+poweroff ${bareMs.toFixed(0)} ms`,
      (offMs / bareMs).toFixed(2),
    ],
  );
  console.log(table.toString());
  console.log(
    `(${bootRounds} boot round(s), ${fastRounds} no-change calls; TCG timings vary ±50 % with host load)`,
  );
  console.log(
    JSON.stringify({
      bench: 'image',
      quick,
      ensureNoChangeMs: Number(fastMs.toFixed(2)),
      coldBuildMs: Math.round(coldMs),
      noChangeVsColdRatio: Number((fastMs / coldMs).toFixed(5)),
      bootToNodeMs: Math.round(nodeMs),
      bootToPoweroffMs: Math.round(offMs),
      bareBootMs: Math.round(bareMs),
      bootToNodeVsBareRatio: Number((nodeMs / bareMs).toFixed(3)),
      bootToPoweroffVsBareRatio: Number((offMs / bareMs).toFixed(3)),
    }),
  );
} finally {
  await rm(work, { recursive: true, force: true });
}
