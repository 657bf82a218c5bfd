// Accelerator choice: KVM only when a guest really runs under it (nested KVM can exist and still fail), else TCG.
import { spawn } from 'node:child_process';
import { access, constants, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { InvalidArgument } from '../errors/index.js';
import type { Accel } from './types.js';

/** Upper bound of the probe: a working KVM runs the probe guest in well under a second. */
const PROBE_TIMEOUT_MS = 3_000;
/** isa-debug-exit turns the guest's `out 0xf4, 0x31` into QEMU exit status (0x31 << 1) | 1. */
const PROBE_EXIT_STATUS = 99;

/**
 * A 512-byte boot sector: `mov al, 0x31; out 0xf4, al; hlt; jmp $`. The BIOS loads it, so seeing
 * the exit status proves the guest executed instructions under the accelerator.
 */
function probeBootSector(): Buffer {
  const sector = Buffer.alloc(512);
  Buffer.from([0xb0, 0x31, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]).copy(sector);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/** The `-accel`/`-cpu` arguments for an accelerator. */
export function accelArgs(accel: Accel): string[] {
  return accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg', '-cpu', 'max'];
}

/** Parses SANDBOXD_ACCEL; undefined when unset. Throws InvalidArgument for anything but kvm|tcg. */
export function accelFromEnv(value: string | undefined): Accel | undefined {
  if (value === undefined || value === '') return undefined;
  if (value === 'kvm' || value === 'tcg') return value;
  throw new InvalidArgument('SANDBOXD_ACCEL', `must be kvm or tcg, got ${JSON.stringify(value)}`);
}

/** Boots the probe guest under KVM; true only if it ran to its exit port within the bound. */
export async function kvmWorks(qemuBinary: string, logger?: Logger): Promise<boolean> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    logger?.debug({ step: 'kvm probe' }, '/dev/kvm is not usable');
    return false;
  }
  const dir = await mkdtemp(join(tmpdir(), 'sandboxd-kvm-probe-'));
  try {
    const image = join(dir, 'boot.img');
    await writeFile(image, probeBootSector());
    const args = [
      ...accelArgs('kvm'),
      '-machine',
      'pc',
      '-m',
      '16',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-no-reboot',
      '-device',
      'isa-debug-exit,iobase=0xf4,iosize=0x04',
      '-drive',
      `file=${image},format=raw,if=ide`,
    ];
    const { status, stderr } = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
      const child = spawn(qemuBinary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        if (stderr.length < 4096) stderr += chunk;
      });
      // A nested KVM that hangs at the first instruction is the case the bound exists for.
      const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_TIMEOUT_MS);
      child.on('error', (err) => {
        clearTimeout(timer);
        resolve({ status: null, stderr: err.message });
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ status: code, stderr });
      });
    });
    const works = status === PROBE_EXIT_STATUS;
    if (!works)
      logger?.debug({ step: 'kvm probe', status, stderr: stderr.trim().slice(0, 300) }, 'KVM probe failed');
    return works;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const probes = new Map<string, Promise<Accel>>();

/**
 * The accelerator for this process: SANDBOXD_ACCEL if set, else the cached result of one KVM probe per
 * QEMU binary (KVM if it really runs a guest, otherwise TCG). Logs the choice once.
 */
export function detectAccel(qemuBinary: string, logger?: Logger): Promise<Accel> {
  const forced = accelFromEnv(process.env.SANDBOXD_ACCEL);
  if (forced) return Promise.resolve(forced);
  let probe = probes.get(qemuBinary);
  if (!probe) {
    const started = Date.now();
    probe = kvmWorks(qemuBinary, logger).then((works) => {
      const accel: Accel = works ? 'kvm' : 'tcg';
      logger?.info(
        { step: 'accel probe', accel, ms: Date.now() - started },
        `hypervisor accelerator: ${accel}`,
      );
      return accel;
    });
    probes.set(qemuBinary, probe);
  }
  return probe;
}
