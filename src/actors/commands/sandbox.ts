// Commands on sandboxes: create, start, stop, pause, resume, delete, update (resize), network refresh, stats.

import type { ContainerStats } from '../../agent/index.js';
import { AlreadyExists, ConcurrencyConflict, InvalidArgument } from '../../errors/index.js';
import type { VmUsage } from '../../hypervisor/index.js';
import { initialSnapshot, stateHasTag } from '../../machines/index.js';
import { checkNetnsPath } from '../../network/index.js';
import { lifeKey, SandboxActor } from '../entity.js';
import type { Kernel } from '../kernel.js';
import { netnsOf } from '../netns-network.js';
import { currentSize, planResize, type ResizeRequest, sameSize } from '../resize.js';
import type { SandboxConfig, SandboxStats, SandboxView } from '../types.js';
import { sandboxView } from '../views.js';
import { checkHostPortsFree, templateShapeOf, vmNetworkOf, vmShapeOf } from '../vm-config.js';
import { changeAndWait, commandAndWait, lifeData } from './common.js';
import { decide } from './decide.js';

export async function createSandbox(k: Kernel, id: string, config: SandboxConfig): Promise<SandboxView> {
  const by = k.open('sandbox.create');
  // A namespace that is missing or not one is refused before anything is recorded (src/network).
  if (typeof config.network === 'object') await checkNetnsPath(config.network.path);
  if (k.sandboxes.has(id)) throw new AlreadyExists('sandbox', id);
  // The id is taken now: commands for it that arrive meanwhile wait for this create's turn to end.
  // A deleted sandbox's stream stays in the log; its id lives again in a stream of its own.
  const key = lifeKey.sandbox(id);
  const incarnation = k.lives.next(key);
  const sandbox = new SandboxActor(id, initialSnapshot('sandbox'), incarnation);
  k.sandboxes.set(id, sandbox);
  return sandbox.admit(async () => {
    try {
      await k.record(
        sandbox,
        {
          type: 'SandboxCreated',
          data: { sandboxId: id, config, ...lifeData(incarnation) },
          correlationId: by,
        },
        { command: 'create' },
      );
      k.lives.note(key, incarnation);
    } catch (err) {
      k.sandboxes.delete(id);
      if (err instanceof ConcurrencyConflict) throw new AlreadyExists('sandbox', id);
      throw err;
    }
    return sandboxView(sandbox);
  });
}

export async function startSandbox(k: Kernel, id: string): Promise<SandboxView> {
  const by = k.open('sandbox.start');
  const s = k.sandboxEntry(id);
  // Template or cold is decided here and recorded in the intent: launchVm (and a retry after a crash) reads it.
  const template = await templateFor(k, s.context.config, id);
  await commandAndWait(
    k,
    s,
    'start',
    { type: 'SandboxStartRequested', data: template ? { template } : {}, correlationId: by },
    ['starting'],
    ['running'],
    async () => {
      // A forwarded port this host cannot bind is refused before anything is recorded: the sandbox stays
      // startable once the port is free (after a recorded failure it could only be deleted).
      const startable = stateHasTag('sandbox', s.state, 'startable');
      const network = vmNetworkOf(s.context.config);
      if (network && startable) await checkHostPortsFree(network, true);
      // A start after a failed one waits for that VM's release, which would otherwise race the new launch.
      if (startable) await k.effects.settled(s);
    },
  );
  return sandboxView(s);
}

/** The template to restore `config`'s VM from, if templates are on and one is built; a lookup failure boots cold. */
async function templateFor(k: Kernel, config: SandboxConfig, sandboxId: string) {
  const shape = templateShapeOf(config);
  if (!k.options.templates || !shape) return undefined;
  try {
    const found = await k.options.templates.find(shape);
    if (!found)
      k.logger.info({ sandboxId, step: 'template lookup', shape }, 'no template fits; booting cold');
    if (!found) return undefined;
    const { id, stateFile, imageVersion, kernelParams } = found;
    return { id, stateFile, imageVersion, kernelParams: [...kernelParams] };
  } catch (err) {
    k.logger.warn({ sandboxId, step: 'template lookup', err }, 'template lookup failed; booting cold');
    return undefined;
  }
}

/** stop, pause and resume: one event asked, one transitional state, one state it ends in. */
const simple = {
  stop: { event: 'SandboxStopRequested', via: 'stopping', to: 'stopped' },
  pause: { event: 'SandboxPauseRequested', via: 'pausing', to: 'paused' },
  resume: { event: 'SandboxResumeRequested', via: 'resuming', to: 'running' },
} as const;

export function stopSandbox(
  k: Kernel,
  id: string,
  options: { timeoutMs?: number } = {},
): Promise<SandboxView> {
  const data = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
  return simpleSandboxCommand(k, id, 'stop', data);
}

export function pauseSandbox(k: Kernel, id: string): Promise<SandboxView> {
  return simpleSandboxCommand(k, id, 'pause', {});
}

export function resumeSandbox(k: Kernel, id: string): Promise<SandboxView> {
  return simpleSandboxCommand(k, id, 'resume', {});
}

async function simpleSandboxCommand(
  k: Kernel,
  id: string,
  command: keyof typeof simple,
  data: object,
): Promise<SandboxView> {
  const by = k.open(`sandbox.${command}`);
  const s = k.sandboxEntry(id);
  const { event, via, to } = simple[command];
  await commandAndWait(k, s, command, { type: event, data, correlationId: by }, [via], [to]);
  return sandboxView(s);
}

export async function deleteSandbox(k: Kernel, id: string, options: { force?: boolean } = {}): Promise<void> {
  const by = k.open('sandbox.delete');
  const s = k.sandboxEntry(id);
  const force = options.force === true;
  await commandAndWait(
    k,
    s,
    force ? 'delete --force' : 'delete',
    { type: 'SandboxDeleteRequested', data: { force }, correlationId: by },
    ['deleting'],
    ['deleted'],
    () => {
      if (force) s.abortInflight();
    },
  );
}

/**
 * Grows the running VM (see Runtime.updateSandbox): SandboxResizeRequested with the totals, checked against the
 * logged size in the sandbox's turn, then resizeVm (hotplug, onlining) holding the turn until its outcome, so no
 * pause, stop or second update slips in and two updates never race for the same DIMM slot.
 */
export async function updateSandbox(k: Kernel, id: string, request: ResizeRequest): Promise<SandboxView> {
  const by = k.open('sandbox.update');
  const s = k.sandboxEntry(id);
  await changeAndWait(
    k,
    s,
    'update',
    () => {
      decide('sandbox.update', { sandbox: s }, 'update');
      const shape = vmShapeOf(s.context.config);
      const from = currentSize(shape, s.context.size);
      const to = planResize(shape, from, request);
      return sameSize(from, to) ? undefined : { type: 'SandboxResizeRequested', data: to, correlationId: by };
    },
    () => s.context.resizing !== undefined,
  );
  return sandboxView(s);
}

/**
 * Plugs in NICs for veths added to the namespace and unplugs those of veths gone (see Runtime.refreshNetwork):
 * the intent, then refreshNetwork holding the sandbox's turn until its outcome, so no stop or second refresh
 * slips in. Asked explicitly (by the CNI caller once its ADD or DEL is done) rather than by watching the
 * namespace: a veth appears before CNI has given it an address, so a watcher would wire it half made.
 */
export async function refreshNetwork(k: Kernel, id: string): Promise<SandboxView> {
  const by = k.open('sandbox.networkRefresh');
  const s = k.sandboxEntry(id);
  await changeAndWait(
    k,
    s,
    'networkRefresh',
    () => {
      if (netnsOf(s.context.config) === undefined)
        throw new InvalidArgument(
          'id',
          `sandbox ${id} is not on a network namespace (config.network.mode netns)`,
        );
      decide('sandbox.networkRefresh', { sandbox: s }, 'networkRefresh');
      return { type: 'SandboxNetworkRefreshRequested', data: {}, correlationId: by };
    },
    () => s.context.netnsRefreshing !== undefined,
  );
  return sandboxView(s);
}

export async function vmUsage(k: Kernel, id: string): Promise<VmUsage | undefined> {
  const s = k.sandbox(id);
  if (!s.context.handle || !k.hypervisor.usage) return undefined;
  return k.call(k.hypervisor.usage(id), 'vm usage');
}

export async function sandboxStats(k: Kernel, id: string): Promise<SandboxStats> {
  const s = k.sandbox(id);
  decide('sandbox.stats', { sandbox: s }, 'stats');
  const containers: Record<string, ContainerStats> = {};
  const [vm] = await Promise.all([
    k.hypervisor.usage ? k.call(k.hypervisor.usage(id), 'vm usage') : undefined,
    ...[...s.containers.values()]
      .filter((c) => c.state === 'running' || c.state === 'paused')
      .map(async (c) => {
        containers[c.id] = await k.call(k.agent.statsContainer(id, c.id), 'statsContainer');
      }),
  ]);
  return { sandbox: sandboxView(s), ...(vm ? { vm } : {}), containers };
}
