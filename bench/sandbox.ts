// Benchmark of sandbox start: sandboxd's launch path vs a bare QEMU command line booting the same guest, same run.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Table from 'cli-table3';
import { pino } from 'pino';
import {
  createQemuHypervisor,
  type GuestImagePaths,
  QmpClient,
  type VmConfig,
} from '../src/hypervisor/index.js';
import { ensureGuestImage } from '../src/image/index.js';

const quick = process.argv.includes('--quick');
const rounds = quick ? 1 : 3;
/** Sandboxes kept running at once to measure the daemon's memory per sandbox. */
const concurrent = quick ? 1 : 2;
const logger = pino({ level: 'warn' }, pino.destination(2));
/** The sandbox shape both sides boot (the runtime's defaults). */
const shape = { vcpus: 1, maxVcpus: 4, memoryMiB: 512, maxMemoryMiB: 4096 } as const;

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function qemuRssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** Retries connecting to a QMP socket until QEMU listens and negotiates; resolves with the session. */
async function qmpWhenReady(path: string, deadlineMs: number): Promise<QmpClient> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      return await QmpClient.connect(path, { timeoutMs: 2_000 });
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}

/** The guest init's first words on the console: userspace is up, the agent starts right after. */
const GUEST_INIT_MARKER = 'sandboxd-init:';

/** Polls a console log until `marker` shows; resolves with the time it was seen. */
async function consoleShows(path: string, marker: string, deadlineMs: number): Promise<number> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const text = await readFile(path, 'utf8').catch(() => '');
    if (text.includes(marker)) return performance.now();
    if (Date.now() > deadline) throw new Error(`${marker} not on ${path} within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * The baseline: the guest as GUEST.md boots it by hand, no daemonizing, no pidfile, no state checks;
 * timed from spawn to QMP answering.
 */
async function bareBoot(
  image: GuestImagePaths,
  dir: string,
): Promise<{ qmpMs: number; userspaceMs: number; pid: number; stop: () => Promise<void> }> {
  const shared = join(dir, 'shared');
  await mkdir(shared, { recursive: true });
  const started = performance.now();
  const child: ChildProcess = spawn(
    'qemu-system-x86_64',
    [
      '-machine',
      'q35',
      '-accel',
      'tcg',
      '-cpu',
      'max',
      '-m',
      // The same VM shape as the sandbox (hotplug room included), so the ratio is sandboxd's own cost.
      `${shape.memoryMiB}M,slots=4,maxmem=${shape.maxMemoryMiB}M`,
      '-smp',
      `${shape.vcpus},maxcpus=${shape.maxVcpus}`,
      '-nodefaults',
      '-display',
      'none',
      '-no-reboot',
      '-kernel',
      image.kernel,
      '-initrd',
      image.initrd,
      '-append',
      'console=ttyS0 quiet panic=-1',
      '-fsdev',
      `local,id=fs0,path=${image.rootDir},security_model=none,readonly=on`,
      '-device',
      'virtio-9p-pci,fsdev=fs0,mount_tag=sbxroot',
      '-fsdev',
      `local,id=fs1,path=${shared},security_model=none`,
      '-device',
      'virtio-9p-pci,fsdev=fs1,mount_tag=sbxshared',
      '-device',
      'virtio-serial-pci',
      '-chardev',
      `socket,id=ch0,path=${join(dir, 'agent.sock')},server=on,wait=off`,
      '-device',
      'virtserialport,chardev=ch0,name=agent.channel.0',
      '-qmp',
      `unix:${join(dir, 'qmp.sock')},server=on,wait=off`,
      '-serial',
      `file:${join(dir, 'console.log')}`,
    ],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const qmp = await qmpWhenReady(join(dir, 'qmp.sock'), 30_000);
  const qmpMs = performance.now() - started;
  const userspaceMs = (await consoleShows(join(dir, 'console.log'), GUEST_INIT_MARKER, 120_000)) - started;
  return {
    qmpMs,
    userspaceMs,
    pid: child.pid!,
    stop: async () => {
      await qmp.execute('quit').catch(() => undefined);
      qmp.close();
      await exited;
    },
  };
}

async function main(): Promise<void> {
  const image = await ensureGuestImage({ logger });
  const work = await mkdtemp(join(tmpdir(), 'sbx-bench-'));
  const hypervisor = createQemuHypervisor({ logger });
  // The accelerator probe runs once per daemon, not per sandbox: keep it out of the per-start figures.
  const accel = await hypervisor.accel();
  const bare: number[] = [];
  const full: number[] = [];
  const bareQmp: number[] = [];
  const fullQmp: number[] = [];
  let n = 0;
  const configOf = async (id: string): Promise<VmConfig> => {
    const sharedDir = join(work, id, 'shared');
    await mkdir(sharedDir, { recursive: true });
    return {
      sandboxId: id,
      stateDir: join(work, id, 'vm'),
      sharedDir,
      image,
      ...shape,
    };
  };
  try {
    // Interleaved, so load drifts on this shared machine hit both sides alike.
    for (let round = 0; round < rounds; round++) {
      const b = await bareBoot(image, join(work, `bare-${round}`));
      bareQmp.push(b.qmpMs);
      bare.push(b.userspaceMs);
      await b.stop();

      const config = await configOf(`full-${n++}`);
      const started = performance.now();
      const handle = await hypervisor.launch(config);
      fullQmp.push(performance.now() - started);
      full.push((await consoleShows(handle.consoleLog, GUEST_INIT_MARKER, 120_000)) - started);
      await hypervisor.destroy(config.sandboxId, config.stateDir);
    }

    // Daemon memory per running sandbox (QEMU's own RSS is reported apart).
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const rssBefore = process.memoryUsage().rss;
    const running: VmConfig[] = [];
    const qemuRss: number[] = [];
    for (let i = 0; i < concurrent; i++) {
      const config = await configOf(`rss-${i}`);
      const handle = await hypervisor.launch(config);
      running.push(config);
      qemuRss.push(await qemuRssKiB(handle.pid));
    }
    gc?.();
    const daemonRssPerSandboxKiB = (process.memoryUsage().rss - rssBefore) / 1024 / concurrent;
    for (const config of running) await hypervisor.destroy(config.sandboxId, config.stateDir);

    const bareMs = median(bare);
    const fullMs = median(full);
    const ratio = fullMs / bareMs;
    const table = new Table({ head: ['measure', 'median', 'runs'] });
    const runs = (values: number[]) => values.map((v) => v.toFixed(0)).join(', ');
    table.push(
      ['bare QEMU spawn → QMP ready', `${median(bareQmp).toFixed(1)} ms`, runs(bareQmp)],
      ['sandboxd launch → QMP ready', `${median(fullQmp).toFixed(1)} ms`, runs(fullQmp)],
      ['bare QEMU spawn → guest init runs', `${bareMs.toFixed(1)} ms`, runs(bare)],
      ['sandboxd launch → guest init runs', `${fullMs.toFixed(1)} ms`, runs(full)],
      ['ratio (target ≤ 1.15)', ratio.toFixed(3), ''],
      ['daemon RSS per running sandbox', `${daemonRssPerSandboxKiB.toFixed(0)} KiB`, `${concurrent} VMs`],
      ['QEMU RSS per VM (not daemon)', `${(median(qemuRss) / 1024).toFixed(1)} MiB`, ''],
    );
    console.log(
      `sandbox start, accel ${accel}${quick ? ' (quick)' : ''}: QMP-ready mode (no agent in this tree yet)`,
    );
    console.log(table.toString());
    console.log(
      JSON.stringify({
        bench: 'sandbox',
        mode: 'guest-init',
        accel,
        quick,
        rounds,
        bare_ms: Math.round(bareMs * 10) / 10,
        full_ms: Math.round(fullMs * 10) / 10,
        bare_qmp_ms: Math.round(median(bareQmp) * 10) / 10,
        full_qmp_ms: Math.round(median(fullQmp) * 10) / 10,
        ratio: Math.round(ratio * 1000) / 1000,
        target_ratio: 1.15,
        daemon_rss_per_sandbox_kib: Math.round(daemonRssPerSandboxKiB),
        qemu_rss_mib: Math.round(median(qemuRss) / 102.4) / 10,
      }),
    );
  } finally {
    await hypervisor.close();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
