// Shared helpers for tests that boot real VMs: polling with a deadline, finding our QEMU processes, free ports.
import { readdir, readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { isProcessAlive } from '../../src/hypervisor/index.js';

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Polls `probe` every 200 ms until it returns a value; throws naming `what` after `ms`. */
export async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Live (not zombie) QEMU processes whose command line mentions `dir`: what a test must not leave behind. */
export async function qemuPidsUsing(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.startsWith('qemu-system') && cmdline.includes(dir) && (await isProcessAlive(Number(entry)))) {
      pids.push(Number(entry));
    }
  }
  return pids;
}

/** A TCP port nobody listens on right now on 127.0.0.1 (the kernel's pick). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}
