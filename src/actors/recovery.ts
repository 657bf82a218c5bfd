// Reconciliation, the second half of recovery (load.ts is the first): each loaded sandbox compared with the
// world (its QEMU, its guest), what differs appended as events, intents left in flight settled or retried.
import type { ContainerInfo, ExitStatus } from '../agent/index.js';
import { asSandboxdError, Internal } from '../errors/index.js';
import type { EventEnvelope } from '../events/index.js';
import { correlation } from '../explain/index.js';
import { withDeadline } from '../timing/index.js';
import { failureOf } from './effect-runner.js';
import type { AnyEntity, ContainerActor, SandboxActor } from './entity.js';
import type { Kernel } from './kernel.js';
import { reconcileNetns } from './netns-recovery.js';
import { currentSize, sameSize } from './resize.js';
import type { RecoveryReport } from './runtime-options.js';
import { vmShapeOf } from './vm-config.js';

interface Tally {
  reattached: string[];
  lost: string[];
  settled: { stream: string; from: string; how: 'completed' | 'retried' | 'failed' }[];
  appended: number;
  errors: { sandboxId: string; message: string }[];
}

/** The event that asked for the effect an intermediate state waits on (its id keys the retry). */
async function lastIntent(rt: Kernel, entity: AnyEntity, types: readonly string[]): Promise<EventEnvelope> {
  let found: EventEnvelope | undefined;
  for await (const e of rt.store.readStream(entity.stream)) if (types.includes(e.type)) found = e;
  if (!found) throw new Internal('reconcile', `${entity.stream}: no ${types.join('/')} event`);
  return found;
}

const interrupted = (what: string) => ({
  error: { step: 'recovery', kind: 'Internal', message: `the daemon restarted while ${what}` },
});

function exitData(exit: ExitStatus | undefined) {
  const e = exit ?? { exitCode: 255 };
  return {
    exitCode: e.exitCode,
    ...(e.signal === undefined ? {} : { signal: e.signal }),
    oomKilled: e.oomKilled === true,
  };
}

async function reconcileSandbox(rt: Kernel, sandbox: SandboxActor, t: Tally): Promise<void> {
  const record = async (entity: AnyEntity, type: string, data: unknown) => {
    const appended = await rt.record(entity, { type, data, correlationId: correlation.recovery });
    if (appended) t.appended += 1;
    return appended;
  };
  const settle = (entity: AnyEntity, from: string, how: 'completed' | 'retried' | 'failed') =>
    t.settled.push({ stream: entity.stream, from, how });
  const retry = async (entity: AnyEntity, effect: string, intents: readonly string[], from: string) => {
    const cause = await lastIntent(rt, entity, intents);
    settle(entity, from, 'retried');
    void rt.effects.start(entity, effect, cause, true);
  };
  const { hypervisor, agent } = rt;
  const handle = sandbox.context.handle;
  const value = sandbox.value as string | { starting: string };
  const state = sandbox.state;

  switch (state) {
    case 'starting': {
      const sub = (value as { starting: string }).starting;
      const alive = handle && sub !== 'launching' ? await hypervisor.attach(handle) : undefined;
      if (!alive) {
        // Launch had no logged outcome (or the VM died): nothing to continue from. Clean what a
        // half-finished launch may have left (Kata leaks its QEMU here: kata-containers#5246).
        await hypervisor.destroy(sandbox.id, rt.dirs(sandbox.id).vm);
        const what = sub === 'launching' ? 'launching the VM' : 'booting, and the VM is gone';
        if (await record(sandbox, 'SandboxStartFailed', interrupted(what)))
          settle(sandbox, `starting.${sub}`, 'failed');
        return;
      }
      if (sub === 'connecting') await retry(sandbox, 'connectAgent', ['VmLaunched'], 'starting.connecting');
      else await retry(sandbox, 'initGuest', ['AgentConnected'], 'starting.initialising');
      return;
    }
    case 'running':
    case 'paused':
    case 'pausing':
    case 'resuming': {
      const alive = handle ? await hypervisor.attach(handle) : undefined;
      if (!alive) {
        const ended = handle ? await hypervisor.exitStatusOf?.(handle) : undefined;
        const reason = `the VM was gone when the daemon restarted${ended ? ` (${ended})` : ''}`;
        await record(sandbox, 'SandboxLost', { reason });
        t.lost.push(sandbox.id);
        return;
      }
      // A paused guest is frozen: its agent cannot answer until it is resumed. Ask QEMU first.
      const status = await hypervisor.status(sandbox.id);
      const frozen = status === 'paused';
      if (!frozen) {
        try {
          await agent.connect(sandbox.id, alive.agentSocket, {
            deadlineMs: rt.timeouts.connectAgent,
            outputSocket: alive.outputSocket,
          });
          await agent.check(sandbox.id);
        } catch (err) {
          const reason = `the VM runs but its agent does not answer: ${asSandboxdError(err, 'check').message}`;
          await record(sandbox, 'SandboxLost', { reason });
          t.lost.push(sandbox.id);
          return;
        }
      }
      await record(sandbox, 'SandboxReattached', { handle: alive });
      t.reattached.push(sandbox.id);
      // Its containers are checked by the resume, before the sandbox runs again (resumeVm → afterResume);
      // marked before a retried resume can get there.
      if (frozen) rt.containersUnchecked.add(sandbox.id);
      if (state === 'pausing' || state === 'resuming') {
        const done = state === 'pausing' ? frozen : !frozen;
        if (done) {
          await record(sandbox, state === 'pausing' ? 'SandboxPaused' : 'SandboxResumed', {});
          settle(sandbox, state, 'completed');
        } else if (state === 'pausing') await retry(sandbox, 'pauseVm', ['SandboxPauseRequested'], state);
        else await retry(sandbox, 'resumeVm', ['SandboxResumeRequested'], state);
      }
      if (frozen) {
        if (state === 'running')
          rt.logger.warn({ sandboxId: sandbox.id }, 'the log says running, QEMU says paused');
        return;
      }
      // A resize asked for before the restart, without outcome: run again (it grows from what QEMU has).
      if (state === 'running' && sandbox.context.resizing !== undefined)
        await retry(sandbox, 'resizeVm', ['SandboxResizeRequested'], 'running');
      else if (state === 'running') await reconcileSize(rt, sandbox, record);
      // A guest network change asked for before the restart, without outcome: made again (idempotent).
      if (state === 'running' && sandbox.context.networkUpdating !== undefined)
        await retry(sandbox, 'updateGuestNetwork', ['GuestNetworkUpdateRequested'], 'running');
      // A netns refresh asked for before the restart, without outcome: run again (it plans from the world).
      if (state === 'running' && sandbox.context.netnsRefreshing)
        await retry(sandbox, 'refreshNetwork', ['SandboxNetworkRefreshRequested'], 'running');
      await reconcileContainers(rt, sandbox, t);
      return;
    }
    case 'stopping': {
      const alive = handle ? await hypervisor.attach(handle) : undefined;
      if (!alive) {
        await record(sandbox, 'SandboxStopped', {});
        settle(sandbox, 'stopping', 'completed');
      } else await retry(sandbox, 'stopVm', ['SandboxStopRequested'], 'stopping');
      return;
    }
    case 'deleting':
      await retry(sandbox, 'destroyVm', ['SandboxDeleteRequested'], 'deleting');
      return;
    case 'failed':
      // A failure whose clean-up never ran may have left the VM behind.
      if (handle && (await hypervisor.attach(handle)))
        await hypervisor.destroy(sandbox.id, rt.dirs(sandbox.id).vm);
      break;
    default:
      break;
  }
  // The sandbox runs nothing (created, stopped, failed, lost): children still marked alive ended with it.
  for (const c of [...sandbox.containers.values()]) {
    for (const e of c.execs.values()) {
      if (e.state === 'starting' || e.state === 'running')
        await record(e, 'ProcessLost', { reason: `sandbox ${state}` });
    }
    if (c.state === 'deleting') await retry(c, 'removeContainer', ['ContainerDeleteRequested'], 'deleting');
    else if (!c.is('ended')) {
      await record(c, 'ContainerLost', { reason: `sandbox ${state}` });
    }
  }
}

type Record_ = (entity: AnyEntity, type: string, data: unknown) => Promise<unknown>;

/** Later asks to online what QEMU has, in case a device plugged just before a crash had not reached the guest's sysfs yet. */
const ONLINE_AGAIN_AFTER_MS = [1_000, 3_000] as const;

/**
 * QEMU bigger than the log says without a resize in flight: a log written before SandboxResizeRequested
 * existed (its update hotplugged first and appended afterwards), or a change made to QEMU behind our back.
 * Asks QEMU (two QMP queries) and, when they differ, appends what it says and has the guest online it: once
 * now, and again a little later without holding up recovery (onlining is idempotent; failures only logged).
 */
async function reconcileSize(rt: Kernel, sandbox: SandboxActor, record: Record_): Promise<void> {
  const { hypervisor, agent } = rt;
  if (!hypervisor.size) return;
  const real = await hypervisor.size(sandbox.id);
  const logged = currentSize(vmShapeOf(sandbox.context.config), sandbox.context.size);
  if (sameSize(real, logged)) return;
  rt.logger.warn(
    { sandboxId: sandbox.id, logged, real },
    'the VM is not the size the log says: recording it',
  );
  await record(sandbox, 'SandboxResized', { vcpus: real.vcpus, memoryMiB: real.memoryMiB });
  const online = async () => {
    if (sandbox.state !== 'running') return;
    try {
      await agent.onlineCpuMem(sandbox.id, { cpus: real.vcpus, memory: true });
    } catch (err) {
      rt.logger.warn(
        { sandboxId: sandbox.id, err },
        'onlining hotplugged vCPUs / memory in the guest failed',
      );
    }
  };
  await online();
  for (const ms of ONLINE_AGAIN_AFTER_MS) setTimeout(() => void online(), ms).unref();
}

type Retry = (entity: AnyEntity, effect: string, intents: readonly string[], from: string) => Promise<void>;
type Settle = (entity: AnyEntity, from: string, how: 'completed' | 'retried' | 'failed') => void;

async function reconcileContainer(
  rt: Kernel,
  c: ContainerActor,
  info: ContainerInfo | undefined,
  record: Record_,
  retry: Retry,
  settle: Settle,
): Promise<void> {
  await reconcileContainerLife(rt, c, info, record, retry, settle);
  if (c.context.updating === undefined) return;
  // An update asked for before the restart has no outcome in the log: applied again while the container
  // lives (setting the same resources twice is idempotent), failed as interrupted once it ended.
  if (c.state === 'created' || c.state === 'running' || c.state === 'paused') {
    await retry(c, 'updateContainer', ['ContainerUpdateRequested'], c.state);
  } else if (c.state === 'stopped') {
    await record(c, 'ContainerUpdateFailed', interrupted('updating the container'));
    settle(c, 'updating', 'failed');
  }
}

async function reconcileContainerLife(
  rt: Kernel,
  c: ContainerActor,
  info: ContainerInfo | undefined,
  record: Record_,
  retry: Retry,
  settle: Settle,
): Promise<void> {
  // Execs first: the container's own end would otherwise mark them lost before we learn their exits.
  for (const e of c.execs.values()) {
    if (e.state !== 'starting' && e.state !== 'running') continue;
    const p = info?.processes.find((x) => x.execId === e.id);
    if (!p) {
      if (e.state === 'starting') {
        await record(e, 'ExecStartFailed', interrupted('starting the process'));
        settle(e, 'starting', 'failed');
      } else await record(e, 'ProcessLost', { reason: 'the agent no longer knows the process' });
    } else if (!p.running) {
      const { oomKilled, ...exit } = exitData(p.exit);
      await record(e, 'ProcessExitedWhileDaemonDown', oomKilled ? { ...exit, oomKilled } : exit);
      if (e.state === 'starting') settle(e, 'starting', 'completed');
    } else if (e.state === 'starting') {
      await record(e, 'ExecStarted', { pid: 0 });
      settle(e, 'starting', 'completed');
    }
  }
  let state = c.state;
  if (state === 'stopped' || state === 'failed' || state === 'deleted') return;
  if (state === 'deleting') {
    if (info) await retry(c, 'removeContainer', ['ContainerDeleteRequested'], state);
    else {
      await record(c, 'ContainerDeleted', {});
      settle(c, state, 'completed');
    }
    return;
  }
  if (state === 'creating') {
    if (!info) {
      await retry(c, 'createContainer', ['ContainerCreateRequested'], state);
      return;
    }
    // The create landed; what happened to the container since is checked below like any other.
    await record(c, 'ContainerCreated', { pid: info.pid ?? 0 });
    settle(c, state, 'completed');
    state = c.state;
  }
  if (!info) {
    await record(c, 'ContainerLost', { reason: 'the agent no longer knows the container' });
    return;
  }
  if (info.status === 'stopped') {
    await record(c, 'ContainerExitedWhileDown', exitData(info.exit));
    if (state !== 'created' && state !== 'running' && state !== 'paused') settle(c, state, 'completed');
    return;
  }
  const settleTo = async (done: boolean, outcome: string, effect: string, intent: string) => {
    if (done) {
      await record(c, outcome, {});
      settle(c, state, 'completed');
    } else await retry(c, effect, [intent], state);
  };
  if (state === 'starting') {
    await settleTo(
      info.status !== 'created',
      'ContainerStarted',
      'startContainer',
      'ContainerStartRequested',
    );
  } else if (state === 'pausing') {
    await settleTo(info.status === 'paused', 'ContainerPaused', 'pauseContainer', 'ContainerPauseRequested');
  } else if (state === 'resuming') {
    await settleTo(
      info.status === 'running',
      'ContainerResumed',
      'resumeContainer',
      'ContainerResumeRequested',
    );
  } else if (state !== info.status) {
    rt.logger.warn(
      { sandboxId: c.sandbox.id, containerId: c.id, logged: state, world: info.status },
      'container state differs from the log',
    );
  }
}

/** Compares each container and exec of a running sandbox with what its agent reports. */
export async function reconcileContainers(rt: Kernel, sandbox: SandboxActor, t?: Tally): Promise<void> {
  const tally = t ?? { reattached: [], lost: [], settled: [], appended: 0, errors: [] };
  const record: Record_ = async (entity, type, data) => {
    const appended = await rt.record(entity, { type, data, correlationId: correlation.recovery });
    if (appended) tally.appended += 1;
    return appended;
  };
  const settle: Settle = (entity, from, how) => tally.settled.push({ stream: entity.stream, from, how });
  const retry: Retry = async (entity, effect, intents, from) => {
    const cause = await lastIntent(rt, entity, intents);
    settle(entity, from, 'retried');
    void rt.effects.start(entity, effect, cause, true);
  };
  const infos = new Map((await rt.agent.listContainers(sandbox.id)).map((i) => [i.containerId, i]));
  for (const c of [...sandbox.containers.values()]) {
    await reconcileContainer(rt, c, infos.get(c.id), record, retry, settle);
  }
}

/** Reconciles every sandbox, `reconcileConcurrency` at a time, each under its own deadline. */
export async function reconcileAll(rt: Kernel): Promise<RecoveryReport> {
  const started = performance.now();
  const t: Tally = { reattached: [], lost: [], settled: [], appended: 0, errors: [] };
  const queue = [...rt.sandboxes.values()];
  const width = Math.max(1, rt.options.reconcileConcurrency ?? 8);
  const worker = async () => {
    for (let s = queue.shift(); s; s = queue.shift()) {
      const sandbox = s;
      try {
        const recordNetns = async (type: string, data: unknown) => {
          const appended = await rt.record(sandbox, { type, data, correlationId: correlation.recovery });
          if (appended) t.appended += 1;
        };
        const reconcile = async () => {
          await reconcileSandbox(rt, sandbox, t);
          // After the rest: by then the log says whether the VM runs, so the namespace is made to match.
          await reconcileNetns(rt, sandbox, recordNetns);
        };
        await withDeadline(reconcile(), rt.timeouts.reconcile, 'reconcile');
      } catch (err) {
        const error = asSandboxdError(err, 'reconcile');
        t.errors.push({ sandboxId: sandbox.id, message: error.message });
        rt.logger.error({ sandboxId: sandbox.id, err: error }, 'reconciliation failed');
        // Last resort for a wedged VM: declare it lost and kill it, so one hung sandbox delays nobody.
        const lost = await rt
          .record(sandbox, {
            type: 'SandboxLost',
            data: { reason: failureOf('reconcile', error).message },
            correlationId: correlation.recovery,
          })
          .catch(() => undefined);
        if (lost) {
          t.lost.push(sandbox.id);
          t.appended += 1;
          void rt.hypervisor.destroy(sandbox.id, rt.dirs(sandbox.id).vm).catch(() => undefined);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, queue.length) }, worker));
  let containers = 0;
  let execs = 0;
  for (const s of rt.sandboxes.values()) {
    containers += s.containers.size;
    for (const c of s.containers.values()) execs += c.execs.size;
  }
  return {
    sandboxes: rt.sandboxes.size,
    containers,
    execs,
    eventsReplayed: 0,
    snapshotsUsed: 0,
    loadMs: 0,
    reconcileMs: performance.now() - started,
    ...t,
  };
}
