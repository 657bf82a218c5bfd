// A task Update's OCI LinuxResources → sandboxd's container.update. What the guest's cgroup can take is
// applied (memory.limit, cpu.quota, cpu.period, cpu.shares, cpu.cpus, cpu.mems, pids.limit); a member that keeps the value the task's bundle
// already has needs no applying (CRI's UpdateContainerResources sends the whole set, devices included); any
// other change is InvalidArgument naming the OCI member, and nothing is applied.
import { isDeepStrictEqual } from 'node:util';
import { checkCpuList } from '../bundle/index.js';
import { invalid } from './errdefs.js';

export interface ApiResources {
  memoryLimitBytes?: number;
  cpuQuota?: number;
  cpuPeriod?: number;
  pidsLimit?: number;
  cpuShares?: number;
  cpusetCpus?: string;
  cpusetMems?: string;
}

type NumberKey = 'memoryLimitBytes' | 'cpuQuota' | 'cpuPeriod' | 'pidsLimit' | 'cpuShares';
type ListKey = 'cpusetCpus' | 'cpusetMems';
type Applier = (v: number) => [NumberKey, number] | string;
type ListApplier = (v: string) => [ListKey, string] | string;

/** Host CPU / node lists: the sandbox's vCPUs are pinned to them (sandboxd checks they are online). */
const cpuList =
  (key: ListKey): ListApplier =>
  (v) => {
    try {
      return [key, checkCpuList(v, key)];
    } catch (err) {
      return (err as Error).message.replace(`${key}: `, '');
    }
  };

const APPLIED_LISTS: Record<string, ListApplier> = {
  'cpu.cpus': cpuList('cpusetCpus'),
  'cpu.mems': cpuList('cpusetMems'),
};

const atLeast =
  (key: NumberKey, min: number, max = Number.MAX_SAFE_INTEGER): Applier =>
  (v) =>
    Number.isInteger(v) && v >= min && v <= max
      ? [key, v]
      : v < 0
        ? 'unlimited (-1) cannot be applied to a sandboxd container'
        : `must be an integer from ${min} to ${max}`;

const APPLIED: Record<string, Applier> = {
  'memory.limit': atLeast('memoryLimitBytes', 4 * 1024 * 1024),
  'cpu.quota': atLeast('cpuQuota', 1000),
  'cpu.period': atLeast('cpuPeriod', 1000, 1_000_000),
  'cpu.shares': atLeast('cpuShares', 2, 262_144),
  'pids.limit': atLeast('pidsLimit', 1),
};

/** Go's zero values: what containerd's JSON carries for a member nobody set. */
const unset = (v: unknown) =>
  v === undefined || v === null || v === 0 || v === '' || v === false || (Array.isArray(v) && v.length === 0);

export function resourcesOf(
  update: Record<string, unknown>,
  current: Record<string, unknown> = {},
): ApiResources {
  const out: ApiResources = {};
  const bad: string[] = [];
  for (const [section, value] of Object.entries(update)) {
    const now = current[section];
    if (unset(value) || isDeepStrictEqual(value, now)) continue;
    if (typeof value !== 'object' || Array.isArray(value)) {
      bad.push(`resources.${section}: cannot be changed in a sandboxd container`);
      continue;
    }
    const before = (typeof now === 'object' && now !== null ? now : {}) as Record<string, unknown>;
    for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
      const path = `${section}.${name}`;
      // A swap equal to the limit is cgroup v1's "memory + swap = limit": no swap, which a VM without swap
      // already has (containerd's CRI sends it so with every memory limit).
      if (path === 'memory.swap' && v === (value as Record<string, unknown>).limit) continue;
      const applyList = APPLIED_LISTS[path];
      const apply = APPLIED[path];
      if (applyList && typeof v === 'string') {
        const r = applyList(v);
        if (typeof r === 'string') bad.push(`resources.${path}: ${r}`);
        else out[r[0]] = r[1];
      } else if (apply && typeof v === 'number') {
        if (v < 0 && isDeepStrictEqual(v, before[name])) continue;
        const r = apply(v);
        if (typeof r === 'string') bad.push(`resources.${path}: ${r}`);
        else out[r[0]] = r[1];
      } else if (!unset(v) && !isDeepStrictEqual(v, before[name])) {
        bad.push(`resources.${path}: cannot be changed in a sandboxd container`);
      }
    }
  }
  if (bad.length > 0) {
    throw invalid(
      `${bad.join('; ')} (a task update applies memory.limit, cpu.quota, cpu.period, cpu.shares, cpu.cpus, cpu.mems, pids.limit)`,
    );
  }
  return out;
}
