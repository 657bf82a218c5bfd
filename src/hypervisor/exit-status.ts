// How a daemonized QEMU ended. It is nobody's child, so its exit status is kept by sandboxd-qemu-reaper
// (src/hypervisor/reaper.c), a tiny parent that outlives the daemon and writes "exit N" / "signal N" into the
// VM's state dir when QEMU ends. Without the reaper (a build that did not compile it) a vanished QEMU is
// only "gone", as before.
import { existsSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { sleep } from '../timing/index.js';

/** The reaper: built by scripts/setup.sh into dist/bin (SANDBOXD_QEMU_REAPER overrides; '' turns it off). */
export function defaultReaperBinary(): string | undefined {
  const env = process.env.SANDBOXD_QEMU_REAPER;
  if (env !== undefined) return env === '' ? undefined : env;
  const built = fileURLToPath(new URL('../../bin/sandboxd-qemu-reaper', import.meta.url));
  return existsSync(built) ? built : undefined;
}

const SIGNAL_NAMES = new Map<number, string>(
  Object.entries(constants.signals).map(([name, number]) => [number, name]),
);

/** The reaper's line in words: `QEMU killed by signal 9 (SIGKILL)`, `QEMU exited with status 1`. */
export function describeExitStatus(line: string): string | undefined {
  const match = /^(exit|signal) (\d+)$/.exec(line.trim());
  if (!match) return undefined;
  const n = Number(match[2]);
  if (match[1] === 'exit') return `QEMU exited with status ${n}`;
  const name = SIGNAL_NAMES.get(n);
  return `QEMU killed by signal ${n}${name ? ` (${name})` : ''}`;
}

/** What the reaper wrote for this VM, in words; undefined when it wrote nothing (yet). */
export function readExitStatus(file: string): string | undefined {
  try {
    return describeExitStatus(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** The reaper writes right after it reaped QEMU, which the daemon may notice first: wait a little for it. */
export async function waitExitStatus(file: string, ms: number): Promise<string | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const said = readExitStatus(file);
    if (said !== undefined || Date.now() >= deadline) return said;
    await sleep(20);
  }
}
