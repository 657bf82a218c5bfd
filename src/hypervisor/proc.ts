// Process facts from /proc: is a pid alive, is it still the process we started (start time), waiting for it to go.
import { readFile } from 'node:fs/promises';
import { sleep } from '../timing/index.js';

export interface ProcStat {
  /** One-letter state: R, S, D, Z (zombie), T, X … */
  readonly state: string;
  /** Start time after boot, in clock ticks (field 22 of /proc/<pid>/stat). */
  readonly startTime: number;
}

/** Reads /proc/<pid>/stat; undefined when the pid does not exist. */
export async function readProcStat(pid: number): Promise<ProcStat | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: fields resume after the LAST ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field 22 (starttime) is rest[19].
  const state = rest[0] ?? '?';
  const startTime = Number(rest[19]);
  if (!Number.isFinite(startTime)) return undefined;
  return { state, startTime };
}

/** What a process costs the host: CPU time so far, resident memory, threads. */
export interface ProcUsage {
  /** User + system CPU time, in seconds. */
  readonly cpuSeconds: number;
  readonly rssBytes: number;
  readonly threads: number;
}

/** USER_HZ: the unit of /proc/<pid>/stat times; 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Reads CPU time, RSS and threads of `pid` from /proc; undefined when it is gone. */
export async function readProcUsage(pid: number): Promise<ProcUsage | undefined> {
  let stat: string;
  let status: string;
  try {
    [stat, status] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'utf8'),
      readFile(`/proc/${pid}/status`, 'utf8'),
    ]);
  } catch {
    return undefined;
  }
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 (utime) and 15 (stime) are rest[11] and rest[12].
  const ticks = Number(rest[11]) + Number(rest[12]);
  const kib = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
  const threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  return { cpuSeconds: ticks / CLOCK_TICKS_PER_SECOND, rssBytes: kib * 1024, threads };
}

/**
 * True when `pid` runs and (if given) started at `startTime`: a zombie or a reused pid counts as gone.
 * Zombies matter here: our QEMU is reparented to pid 1, which may reap it late.
 */
export async function isProcessAlive(pid: number, startTime?: number): Promise<boolean> {
  const stat = await readProcStat(pid);
  if (!stat || stat.state === 'Z' || stat.state === 'X') return false;
  return startTime === undefined || stat.startTime === startTime;
}

/** Reads /proc/<pid>/cmdline as its argument list; undefined when gone. */
export async function readCmdline(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((arg) => arg.length > 0);
  } catch {
    return undefined;
  }
}

/** Resolves true once the process is gone, false if it still runs after `timeoutMs`. Polls /proc. */
export async function waitForExit(
  pid: number,
  startTime: number | undefined,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let delay = 10;
  for (;;) {
    if (!(await isProcessAlive(pid, startTime))) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
    delay = Math.min(delay * 2, 100);
  }
}

/** Sends a signal, ignoring "no such process". */
export function signalProcess(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}
