// The read-only commands and update: state, list, ps, features, events, update.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Ctx } from './context.js';
import { badArgument, RuncError } from './errors.js';
import { mustLocate } from './lifecycle.js';
import { recordedIds } from './records.js';
import { type RuncState, runcState, SPEC_VERSION, statusOf } from './state.js';

export async function state(ctx: Ctx, id: string): Promise<RuncState> {
  return runcState(id, await mustLocate(ctx, id));
}

export async function list(ctx: Ctx): Promise<RuncState[]> {
  const out: RuncState[] = [];
  for (const id of await recordedIds(ctx.root)) {
    const found = await mustLocate(ctx, id).catch(() => undefined);
    if (found) out.push(runcState(id, found));
  }
  return out;
}

/** runc's `list` table (tab-aligned as its tabwriter prints it). */
export function listTable(states: readonly RuncState[]): string {
  const rows = [
    ['ID', 'PID', 'STATUS', 'BUNDLE', 'CREATED', 'OWNER'],
    ...states.map((s) => [s.id, String(s.pid), s.status, s.bundle, s.created, s.owner || 'root']),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 4))).join('')).join('\n')}\n`;
}

interface ProcessInfo {
  pid: number;
  user?: string;
  command: string;
}

export async function ps(ctx: Ctx, id: string, format: string): Promise<string> {
  const found = await mustLocate(ctx, id);
  const status = statusOf(found.view?.state);
  if (status !== 'running' && status !== 'paused')
    throw new RuncError('InvalidState', 'container not running');
  const procs = await ctx.client.call<ProcessInfo[]>('container.ps', { sandboxId: found.sandboxId, id });
  // The pids are the guest's: the processes live in the VM; the keeper's host pid is what `state` reports.
  if (format === 'json') return `${JSON.stringify(procs.map((p) => p.pid))}\n`;
  const rows = [['PID', 'USER', 'CMD'], ...procs.map((p) => [String(p.pid), p.user ?? '', p.command])];
  const widths = [0, 1].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows.map((r) => `${r[0]!.padEnd(widths[0]! + 3)}${r[1]!.padEnd(widths[1]! + 3)}${r[2]}`).join('\n')}\n`;
}

/** What this runtime supports, in the shape of runc's `features` (runtime-spec features.md). */
export function features(): Record<string, unknown> {
  return {
    ociVersionMin: '1.0.0',
    ociVersionMax: SPEC_VERSION,
    hooks: ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'],
    mountOptions: ['bind', 'rbind', 'ro', 'rw', 'nosuid', 'nodev', 'noexec', 'relatime', 'strictatime'],
    linux: {
      namespaces: ['cgroup', 'ipc', 'mount', 'network', 'pid', 'user', 'uts'],
      capabilities: [],
      cgroup: { v1: true, v2: true, systemd: true, systemdUser: false },
      seccomp: { enabled: true },
      apparmor: { enabled: false },
      selinux: { enabled: false },
    },
    annotations: {
      'io.sandboxd.oci.vm': 'each container runs in a QEMU VM (one per container, or one per CRI pod)',
    },
  };
}

interface LinuxResources {
  memory?: { limit?: number };
  cpu?: { quota?: number; period?: number; shares?: number; cpus?: string; mems?: string };
  pids?: { limit?: number };
}

export interface UpdateFlags {
  readonly resources?: string;
  readonly memory?: string;
  readonly cpuQuota?: string;
  readonly cpuPeriod?: string;
  readonly cpuShare?: string;
  readonly cpusetCpus?: string;
  readonly cpusetMems?: string;
  readonly pidsLimit?: string;
}

const positive = (v: number | undefined) => (v !== undefined && v > 0 ? v : undefined);

export async function update(ctx: Ctx, id: string, o: UpdateFlags): Promise<void> {
  let r: LinuxResources = {};
  if (o.resources) {
    const text =
      o.resources === '-' ? await readAll(process.stdin) : await readFile(resolve(o.resources), 'utf8');
    try {
      r = JSON.parse(text) as LinuxResources;
    } catch (err) {
      throw badArgument('--resources', `not valid JSON: ${(err as Error).message}`);
    }
  }
  const num = (v: string | undefined, name: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n)) throw badArgument(name, `${JSON.stringify(v)} is not an integer`);
    return n;
  };
  const memory = num(o.memory, '--memory') ?? r.memory?.limit;
  const quota = num(o.cpuQuota, '--cpu-quota') ?? r.cpu?.quota;
  const period = num(o.cpuPeriod, '--cpu-period') ?? r.cpu?.period;
  const shares = num(o.cpuShare, '--cpu-share') ?? r.cpu?.shares;
  const pids = num(o.pidsLimit, '--pids-limit') ?? r.pids?.limit;
  const cpus = o.cpusetCpus ?? r.cpu?.cpus;
  const mems = o.cpusetMems ?? r.cpu?.mems;
  const resources = {
    ...(positive(memory) ? { memoryLimitBytes: memory } : {}),
    ...(positive(quota) ? { cpuQuota: quota } : {}),
    ...(positive(period) ? { cpuPeriod: period } : {}),
    ...(positive(shares) ? { cpuShares: shares } : {}),
    ...(cpus ? { cpusetCpus: cpus } : {}),
    ...(mems ? { cpusetMems: mems } : {}),
    ...(positive(pids) ? { pidsLimit: pids } : {}),
  };
  const found = await mustLocate(ctx, id);
  if (statusOf(found.view?.state) === 'stopped') throw new RuncError('InvalidState', 'container not running');
  await ctx.client.call('container.update', { sandboxId: found.sandboxId, id, resources });
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

interface ContainerStats {
  cpuUsageUsec?: number;
  memoryUsageBytes?: number;
  memoryLimitBytes?: number;
  pids?: number;
}

/** One runc `events` stats line: {type: "stats", id, data} with runc's member names. */
export async function statsEvent(ctx: Ctx, id: string): Promise<Record<string, unknown>> {
  const found = await mustLocate(ctx, id);
  if (statusOf(found.view?.state) === 'stopped') throw new RuncError('InvalidState', 'container not running');
  const s = await ctx.client.call<ContainerStats>('container.stats', { sandboxId: found.sandboxId, id });
  return {
    type: 'stats',
    id,
    data: {
      cpu: { usage: { total: (s.cpuUsageUsec ?? 0) * 1000 } },
      memory: { usage: { usage: s.memoryUsageBytes ?? 0, limit: s.memoryLimitBytes ?? 0 } },
      pids: { current: s.pids ?? 0 },
    },
  };
}
