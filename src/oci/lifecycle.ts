// The runtime spec's operations as runc has them: create, start, kill, delete, pause, resume, run. Each checks
// the container's state first and changes nothing when the state does not allow it; a failed create undoes
// every step it took (sandbox, record, container, keeper), leaving no trace.
import type { ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { ID_PATTERN, validateBundle } from '../api/index.js';
import { createCgroups, hostCgroupDirs, joinCgroups, removeCgroups } from '../cgroups/index.js';
import type { Ctx } from './context.js';
import { badArgument, exists, isNotFound, notExist, RuncError } from './errors.js';
import { keeperExit, spawnKeeper } from './keeper.js';
import { type Located, locate, placement } from './locate.js';
import {
  readRecord,
  removePointer,
  removeRecord,
  writeDurably,
  writePointer,
  writeRecord,
} from './records.js';
import { parseSignal } from './signals.js';
import { alive, SPEC_VERSION, statusOf } from './state.js';

/** The label of a sandbox sandboxd-runc made for one container (or pod): its id. */
export const OWNER_LABEL = 'io.sandboxd.oci/container';

export function checkId(id: string): void {
  if (!ID_PATTERN.test(id)) throw new RuncError('InvalidArgument', `invalid id format: ${id}`);
}

/** The container `id`, or runc's "container does not exist". */
export async function mustLocate(ctx: Ctx, id: string): Promise<Located> {
  checkId(id);
  const found = await locateLive(ctx, id);
  if (!found) throw notExist();
  return found;
}

/**
 * The container `id`; when its keeper is gone (killed -9) but the daemon still has its process, the process is
 * ended first, as the runtime spec's "the process exited": nobody is left to stand for it on the host (its
 * waiter saw the keeper die), so it must not run on unseen. The kill and the exit are the daemon's events.
 */
async function locateLive(ctx: Ctx, id: string): Promise<Located | undefined> {
  const found = await locate(ctx.client, ctx.root, id);
  const pid = found?.record?.keeperPid;
  const status = statusOf(found?.view?.state);
  if (!found || !pid || status === 'stopped' || status === 'creating' || alive(pid)) return found;
  const { sandboxId } = found;
  ctx.log.warn({ containerId: id, sandboxId, keeperPid: pid, status }, 'keeper gone: ending the process');
  if (status === 'created') {
    await ctx.client.call('container.delete', { sandboxId, id, force: true });
  } else {
    if (status === 'paused')
      await ctx.client.call('container.resume', { sandboxId, id }).catch(() => undefined);
    await ctx.client.call('container.kill', { sandboxId, id, signal: 9, all: true }).catch((err) => {
      if (!isNotFound(err)) throw err;
    });
    await ctx.client.call('container.wait', { sandboxId, id, timeoutMs: 30_000 }).catch(() => undefined);
  }
  return locate(ctx.client, ctx.root, id);
}

export interface CreateOptions {
  readonly bundle?: string;
  readonly pidFile?: string;
  readonly consoleSocket?: string;
  /** Keep the keeper in this session and return it (run without --detach). */
  readonly attached?: boolean;
}

export async function create(ctx: Ctx, id: string, o: CreateOptions): Promise<ChildProcess> {
  checkId(id);
  const summary = await validateBundle(resolve(o.bundle ?? '.'), 'bundle');
  if ((await readRecord(ctx.root, id)) || (await locate(ctx.client, ctx.root, id))) throw exists(id);
  const annotations = (summary.spec.annotations ?? {}) as Record<string, string>;
  const { sandboxId, joins } = placement(id, annotations);
  const undo: (() => Promise<unknown>)[] = [];
  const log = ctx.log.child({ containerId: id, sandboxId });
  try {
    // The host cgroup the spec names: made first (removed last on undo), QEMU and the keeper join it.
    const hostCgroup = await hostCgroupOf(ctx, summary.spec);
    if (hostCgroup) {
      const made = await createCgroups(hostCgroup);
      undo.push(() => removeCgroups(made));
    }
    if (!joins) {
      const netns = networkNamespacePath(summary.spec);
      await ctx.client.call('sandbox.create', {
        id: sandboxId,
        // A network namespace the bundle names (podman --network ns:PATH, CNI) is the VM's: its taps are
        // wired to that namespace's veths and the guest gets their addresses (sandboxd's netns mode).
        config: {
          labels: { [OWNER_LABEL]: id },
          ...(netns ? { network: { mode: 'netns', path: netns } } : {}),
          ...(hostCgroup ? { hostCgroup } : {}),
        },
      });
      undo.push(() => ctx.client.call('sandbox.delete', { id: sandboxId, force: true }));
      log.debug('booting the sandbox');
      await ctx.client.call('sandbox.start', { id: sandboxId });
    }
    const record = {
      id,
      sandboxId,
      ownsSandbox: !joins,
      bundle: summary.path,
      rootfs: resolve(summary.path, summary.rootPath),
      ociVersion: summary.ociVersion || SPEC_VERSION,
      created: new Date().toISOString(),
      ...(hostCgroup ? { hostCgroup } : {}),
    };
    await writeRecord(ctx.root, record);
    undo.push(() => removeRecord(ctx.root, id));
    if (ctx.root !== ctx.defaultRoot) {
      await writePointer(ctx.defaultRoot, id, { root: ctx.root, socket: ctx.socket });
      undo.push(() => removePointer(ctx.defaultRoot, id));
    }
    await ctx.client.call('container.create', { sandboxId, id, bundle: summary.path });
    undo.push(() => ctx.client.call('container.delete', { sandboxId, id, force: true }));
    const keeper = await spawnKeeper({
      socket: ctx.socket,
      sandboxId,
      containerId: id,
      ...(o.consoleSocket ? { consoleSocket: resolve(o.consoleSocket) } : {}),
      detached: o.attached !== true,
    });
    undo.push(async () => keeper.kill('SIGKILL'));
    if (hostCgroup && keeper.pid) await joinCgroups(hostCgroup, keeper.pid);
    await writeRecord(ctx.root, { ...record, keeperPid: keeper.pid ?? 0 });
    if (o.pidFile) await writeDurably(resolve(o.pidFile), String(keeper.pid), 0o644);
    if (o.attached !== true) keeper.unref();
    log.info({ keeperPid: keeper.pid }, 'created');
    return keeper;
  } catch (err) {
    for (const step of undo.reverse()) await step().catch(() => undefined);
    throw err;
  }
}

/**
 * The host cgroup directories of the spec's linux.cgroupsPath (runc's placement; --systemd-cgroup: systemd's
 * path for slice:prefix:name). None without a cgroupsPath: the VM stays in the daemon's cgroups.
 */
async function hostCgroupOf(ctx: Ctx, spec: { linux?: unknown }): Promise<string[] | undefined> {
  const path = (spec.linux as { cgroupsPath?: unknown } | undefined)?.cgroupsPath;
  if (typeof path !== 'string' || path === '') return undefined;
  try {
    const dirs = await hostCgroupDirs(path, { systemd: ctx.systemdCgroup });
    return dirs.length > 0 ? dirs : undefined;
  } catch (err) {
    throw new RuncError('InvalidArgument', (err as Error).message);
  }
}

/** The path of the network namespace the spec joins, if it names one. */
export function networkNamespacePath(spec: { linux?: unknown }): string | undefined {
  const namespaces = (spec.linux as { namespaces?: { type?: string; path?: string }[] } | undefined)
    ?.namespaces;
  const net = Array.isArray(namespaces) ? namespaces.find((n) => n?.type === 'network') : undefined;
  return typeof net?.path === 'string' && net.path !== '' ? net.path : undefined;
}

export async function start(ctx: Ctx, id: string): Promise<void> {
  const found = await mustLocate(ctx, id);
  const status = statusOf(found.view?.state);
  if (status === 'stopped') throw new RuncError('InvalidState', 'cannot start a container that has stopped');
  if (status === 'running' || status === 'paused') {
    throw new RuncError('InvalidState', 'cannot start an already running container');
  }
  if (status !== 'created')
    throw new RuncError('InvalidState', `cannot start a container in the ${status} state`);
  await ctx.client.call('container.start', { sandboxId: found.sandboxId, id });
  ctx.log.info({ containerId: id, sandboxId: found.sandboxId }, 'started');
}

/** Signals whose default action ends a process: what a kill does to a created container's waiting init. */
const ENDING = new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 24, 25, 26, 27, 30, 31]);

export async function kill(ctx: Ctx, id: string, signal: string, all: boolean): Promise<void> {
  const sig = parseSignal(signal);
  const found = await mustLocate(ctx, id);
  const status = statusOf(found.view?.state);
  if (status === 'stopped') throw new RuncError('InvalidState', 'container not running');
  if (status === 'created' || status === 'creating') {
    // runc's init waits before exec'ing the process: a signal that ends a process ends it there. sandboxd has no
    // process yet, so the container goes (our record stays: state says stopped until delete).
    if (ENDING.has(sig))
      await ctx.client.call('container.delete', { sandboxId: found.sandboxId, id, force: true });
    return;
  }
  await ctx.client.call('container.kill', {
    sandboxId: found.sandboxId,
    id,
    signal: sig,
    ...(all ? { all } : {}),
  });
}

export async function remove(ctx: Ctx, id: string, force: boolean): Promise<void> {
  checkId(id);
  const found = await locateLive(ctx, id);
  if (!found) {
    await removeRecord(ctx.root, id);
    await removePointer(ctx.defaultRoot, id);
    if (force) return;
    throw notExist();
  }
  const status = statusOf(found.view?.state);
  if (!force && (status === 'running' || status === 'paused')) {
    throw new RuncError('InvalidState', `cannot delete container ${id} that is not stopped: ${status}`);
  }
  const { sandboxId, record } = found;
  if (found.view) {
    await ctx.client.call('container.delete', { sandboxId, id, force }).catch((err) => {
      if (!isNotFound(err)) throw err;
    });
  }
  // Ours when our record says so, or (a record under another --root: podman 4.3 calls delete without its
  // runtime flags) when the sandbox carries the label create gave it.
  const sandbox = await ctx.client
    .call<{
      containers: string[];
      config: { labels?: Record<string, string>; hostCgroup?: string[] };
    }>('sandbox.status', {
      id: sandboxId,
    })
    .catch(() => undefined);
  const owned = record?.ownsSandbox ?? sandbox?.config.labels?.[OWNER_LABEL] === id;
  if (owned && sandbox) {
    const left = await ctx.client
      .call<{ containers: string[] }>('sandbox.status', { id: sandboxId })
      .catch(() => undefined);
    if (left && left.containers.length === 0) {
      await ctx.client.call('sandbox.delete', { id: sandboxId, force: true }).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
    }
  }
  // The keeper ends by itself once the daemon reports the exit; one that lingers is not waited for.
  if (record?.keeperPid && alive(record.keeperPid)) await waitGone(record.keeperPid, 5000);
  // The host cgroup goes with the container, as runc removes it (QEMU and the keeper are gone by now).
  const hostCgroup = record?.hostCgroup ?? (owned ? sandbox?.config.hostCgroup : undefined);
  if (hostCgroup) await removeCgroups(hostCgroup);
  await removeRecord(ctx.root, id);
  await removePointer(ctx.defaultRoot, id);
  ctx.log.info({ containerId: id, sandboxId }, 'deleted');
}

async function waitGone(pid: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
}

export async function pause(ctx: Ctx, id: string): Promise<void> {
  const found = await mustLocate(ctx, id);
  if (statusOf(found.view?.state) !== 'running') throw new RuncError('InvalidState', 'container not running');
  await ctx.client.call('container.pause', { sandboxId: found.sandboxId, id });
}

export async function resume(ctx: Ctx, id: string): Promise<void> {
  const found = await mustLocate(ctx, id);
  if (statusOf(found.view?.state) !== 'paused') throw new RuncError('InvalidState', 'container not paused');
  await ctx.client.call('container.resume', { sandboxId: found.sandboxId, id });
}

/** create + start; attached: waits for the process and deletes the container (unless keep), returning its code. */
export async function run(
  ctx: Ctx,
  id: string,
  o: CreateOptions & { detach?: boolean; keep?: boolean },
): Promise<number> {
  const keeper = await create(ctx, id, { ...o, attached: o.detach !== true });
  try {
    await start(ctx, id);
  } catch (err) {
    await remove(ctx, id, true).catch(() => undefined);
    throw err;
  }
  if (o.detach) return 0;
  // Signals meant for the process reach the keeper (same process group) and it forwards them.
  const ignore = () => undefined;
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.on(s, ignore);
  const code = await keeperExit(keeper);
  if (!o.keep) await remove(ctx, id, true);
  return code;
}

export function requireArg(value: string | undefined, name: string): string {
  if (!value) throw badArgument(name, 'is required');
  return value;
}
