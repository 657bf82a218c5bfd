// cgroup v2 files of a container: limits, usage and OOM counts read and written directly (no crun round trip).
import { watch } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { WireContainerStats, WireResources } from '../agent/index.js';
import { InvalidArgument } from '../errors/index.js';

/** Reads a flat-keyed cgroup file ("key value" lines) into numbers; missing file → empty. */
export async function readKeyed(path: string): Promise<Map<string, number>> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && /^\d+$/.test(value)) values.set(key, Number(value));
  }
  return values;
}

async function readNumber(path: string): Promise<number | undefined> {
  const text = (await readFile(path, 'utf8').catch(() => '')).trim();
  return /^\d+$/.test(text) ? Number(text) : undefined;
}

/** OOM kills counted in a cgroup and its descendants (memory.events is hierarchical). */
export async function oomKills(cgroupDir: string): Promise<number> {
  return (await readKeyed(join(cgroupDir, 'memory.events'))).get('oom_kill') ?? 0;
}

/**
 * Usage of `usageDir` (hierarchical counters, survive the container's own cgroup) and the limit of `limitDir`.
 */
export async function readStats(usageDir: string, limitDir: string): Promise<WireContainerStats> {
  const [cpu, memory, limit, pids, io] = await Promise.all([
    readKeyed(join(usageDir, 'cpu.stat')),
    readNumber(join(usageDir, 'memory.current')),
    readNumber(join(limitDir, 'memory.max')),
    readNumber(join(usageDir, 'pids.current')),
    readFile(join(usageDir, 'io.stat'), 'utf8').catch(() => ''),
  ]);
  let ioReadBytes = 0;
  let ioWriteBytes = 0;
  for (const match of io.matchAll(/\brbytes=(\d+)|\bwbytes=(\d+)/g)) {
    if (match[1]) ioReadBytes += Number(match[1]);
    if (match[2]) ioWriteBytes += Number(match[2]);
  }
  return {
    cpuUsageUsec: cpu.get('usage_usec') ?? 0,
    memoryUsageBytes: memory ?? 0,
    memoryLimitBytes: limit ?? 0,
    pids: pids ?? 0,
    ioReadBytes,
    ioWriteBytes,
  };
}

/**
 * cgroup v1 cpu.shares (2..262144) as cgroup v2 cpu.weight (1..10000): the linear map runc and crun use, so
 * 1024 shares (the default) is weight 39 and the weight a container gets does not depend on who converted it.
 */
export function cpuWeightOfShares(shares: number): number {
  return 1 + Math.floor(((shares - 2) * 9999) / 262_142);
}

/**
 * Writes the set fields of `resources` (0 = unchanged) into a cgroup's memory.max, cpu.max, cpu.weight and
 * pids.max.
 */
export async function writeResources(cgroupDir: string, resources: WireResources): Promise<void> {
  if (resources.memoryLimitBytes < -1) {
    throw new InvalidArgument('resources.memoryLimitBytes', 'must be positive, or -1 for unlimited');
  }
  if (resources.memoryLimitBytes !== 0) {
    const value = resources.memoryLimitBytes === -1 ? 'max' : String(resources.memoryLimitBytes);
    await writeFile(join(cgroupDir, 'memory.max'), value);
  }
  if (resources.cpuQuota !== 0 || resources.cpuPeriod !== 0) {
    const quota = resources.cpuQuota > 0 ? String(resources.cpuQuota) : 'max';
    const period = resources.cpuPeriod > 0 ? ` ${resources.cpuPeriod}` : '';
    await writeFile(join(cgroupDir, 'cpu.max'), `${quota}${period}`);
  }
  if (resources.cpuShares !== 0) {
    if (resources.cpuShares < 2 || resources.cpuShares > 262_144) {
      throw new InvalidArgument('resources.cpuShares', 'must be from 2 to 262144');
    }
    await writeFile(join(cgroupDir, 'cpu.weight'), String(cpuWeightOfShares(resources.cpuShares)));
  }
  if (resources.pidsLimit !== 0) {
    await writeFile(
      join(cgroupDir, 'pids.max'),
      resources.pidsLimit < 0 ? 'max' : String(resources.pidsLimit),
    );
  }
}

/** Pids in a cgroup and all its descendants. */
export async function cgroupPids(cgroupDir: string): Promise<number[]> {
  const pids: number[] = [];
  const text = await readFile(join(cgroupDir, 'cgroup.procs'), 'utf8').catch(() => '');
  for (const line of text.split('\n')) if (/^\d+$/.test(line.trim())) pids.push(Number(line.trim()));
  const entries = await readdir(cgroupDir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    if (entry.isDirectory()) pids.push(...(await cgroupPids(join(cgroupDir, entry.name))));
  }
  return pids;
}

/** Calls `onChange` when the cgroup's memory.events changes (inotify, else a 1 s poll); returns the stop. */
export function watchMemoryEvents(cgroupDir: string, onChange: () => void): () => void {
  try {
    const watcher = watch(join(cgroupDir, 'memory.events'), onChange);
    watcher.on('error', () => {});
    return () => watcher.close();
  } catch {
    const timer = setInterval(onChange, 1000);
    return () => clearInterval(timer);
  }
}

/** The processes in a cgroup, from /proc: pid, user (root or the uid) and command line, by pid. */
export async function processTable(
  cgroupDir: string,
): Promise<{ pid: number; user: string; command: string }[]> {
  const pids = [...new Set(await cgroupPids(cgroupDir))].sort((a, b) => a - b);
  const rows: { pid: number; user: string; command: string }[] = [];
  for (const pid of pids) {
    const [status, cmdline] = await Promise.all([
      readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''),
      readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''),
    ]);
    if (status === '') continue;
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1] ?? '?';
    const name = /^Name:\s+(.*)$/m.exec(status)?.[1] ?? '?';
    const command = cmdline.split('\0').filter(Boolean).join(' ') || `[${name}]`;
    rows.push({ pid, user: uid === '0' ? 'root' : uid, command });
  }
  return rows;
}
