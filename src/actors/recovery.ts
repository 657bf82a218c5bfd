// Recovery: rebuild every live entity from snapshots + log tail with effects off, then reconcile with the world.
import type { ContainerInfo, ExitStatus } from '../agent/index.js';
import { asSandboxdError, Internal } from '../errors/index.js';
import { type EntityKind, type EventEnvelope, entityOfEventType } from '../events/index.js';
import { correlation } from '../explain/index.js';
import {
  type ContextOf,
  fed,
  initialSnapshot,
  type PersistedEntity,
  restoreSnapshot,
  type SnapshotOf,
  step,
} from '../machines/index.js';
import { withDeadline } from './deadline.js';
import { failureOf } from './effect-runner.js';
import { vmShapeOf } from './effects.js';
import { type AnyEntity, ContainerActor, ExecActor, lifeKey, SandboxActor } from './entity.js';
import type { Kernel } from './kernel.js';
import { currentSize, sameSize } from './resize.js';
import type { RecoveryReport } from './runtime-options.js';

export interface LoadResult {
  readonly eventsReplayed: number;
  readonly snapshotsUsed: number;
}

// ---- loading: a fold, nothing runs ------------------------------------------------------------------

/** Creates the entity a stream's first event introduces, under its parent (undefined: parent gone). */
function entityFor(rt: Kernel, first: EventEnvelope): AnyEntity | undefined {
  const d = first.data as {
    sandboxId?: string;
    containerId?: string;
    execId?: string;
    incarnation?: number;
    sandboxIncarnation?: number;
    containerIncarnation?: number;
  };
  switch (first.type) {
    case 'SandboxCreated': {
      rt.lives.note(lifeKey.sandbox(d.sandboxId!), d.incarnation);
      const s = new SandboxActor(d.sandboxId!, initialSnapshot('sandbox'), d.incarnation);
      rt.sandboxes.set(s.id, s);
      return s;
    }
    case 'ContainerCreateRequested': {
      rt.lives.note(
        lifeKey.container(d.sandboxId!, d.sandboxIncarnation ?? 1, d.containerId!),
        d.incarnation,
      );
      const parent = rt.sandboxes.get(d.sandboxId!);
      // A container of an earlier life of its sandbox id belongs to nobody now.
      if (!parent || parent.incarnation !== (d.sandboxIncarnation ?? 1)) return undefined;
      const c = new ContainerActor(parent, d.containerId!, initialSnapshot('container'), d.incarnation);
      parent.containers.set(c.id, c);
      return c;
    }
    case 'ExecRequested':
    case 'ExecCreated': {
      const sandboxLife = d.sandboxIncarnation ?? 1;
      const containerLife = d.containerIncarnation ?? 1;
      rt.lives.note(
        lifeKey.exec(d.sandboxId!, sandboxLife, d.containerId!, containerLife, d.execId!),
        d.incarnation,
      );
      const parent = rt.sandboxes.get(d.sandboxId!)?.containers.get(d.containerId!);
      if (!parent || parent.sandbox.incarnation !== sandboxLife || parent.incarnation !== containerLife) {
        return undefined;
      }
      const e = new ExecActor(parent, d.execId!, initialSnapshot('exec'), d.incarnation);
      parent.execs.set(e.id, e);
      return e;
    }
    default:
      rt.logger.warn(
        { stream: first.stream, type: first.type },
        'stream does not start with a creation event',
      );
      return undefined;
  }
}

/** One pass over the whole log in seq order: parents always come before their children. */
async function foldWholeLog(rt: Kernel): Promise<LoadResult> {
  const byStream = new Map<string, AnyEntity | null>();
  let events = 0;
  for await (const envelope of rt.store.readAll()) {
    let entity = byStream.get(envelope.stream);
    if (entity === undefined) {
      entity = entityFor(rt, envelope) ?? null;
      byStream.set(envelope.stream, entity);
    }
    if (entity) rt.apply(entity, envelope, false);
    events += 1;
  }
  return { eventsReplayed: events, snapshotsUsed: 0 };
}

interface Folded {
  readonly kind: EntityKind;
  /** A machine snapshot when a tail was folded, else the stored one (restored lazily by the entity). */
  state: SnapshotOf<EntityKind> | PersistedEntity;
  version: number;
  savedVersion: number;
}

const kindOfStream = (stream: string): EntityKind | undefined =>
  stream.startsWith('sandbox-')
    ? 'sandbox'
    : stream.startsWith('container-')
      ? 'container'
      : stream.startsWith('exec-')
        ? 'exec'
        : undefined;

/** Per stream: its snapshot (if any) then the events after it. Streams load in parallel, in chunks. */
async function foldFromSnapshots(rt: Kernel): Promise<LoadResult> {
  const streams = await rt.store.listStreams();
  const folded: Folded[] = [];
  let events = 0;
  let snapshotsUsed = 0;
  const loadOne = async (stream: string, version: number): Promise<void> => {
    let kind = kindOfStream(stream);
    let current: Folded | undefined;
    const stored = kind ? await rt.store.loadSnapshot<PersistedEntity>(stream) : undefined;
    if (kind && stored && stored.version <= version) {
      current = { kind, state: stored.state, version: stored.version, savedVersion: stored.version };
      snapshotsUsed += 1;
    }
    if (!current || current.version < version) {
      let snapshot =
        current && kind
          ? (restoreSnapshot(kind, current.state as PersistedEntity) as SnapshotOf<EntityKind>)
          : undefined;
      for await (const envelope of rt.store.readStream(stream, (current?.version ?? 0) + 1)) {
        if (!current || !snapshot) {
          kind = entityOfEventType(envelope.type);
          if (!kind) return;
          snapshot = initialSnapshot(kind);
          current = { kind, state: snapshot, version: 0, savedVersion: 0 };
        }
        snapshot = step(current.kind, snapshot as never, fed(envelope) as never).snapshot;
        current.state = snapshot;
        current.version = envelope.version;
        events += 1;
      }
    }
    if (current) folded.push(current);
  };
  const chunk = 256;
  for (let i = 0; i < streams.length; i += chunk) {
    await Promise.all(streams.slice(i, i + chunk).map((s) => loadOne(s.stream, s.version)));
  }
  // Attach parents first; an entity whose parent was deleted (or never existed) is dropped.
  const order: EntityKind[] = ['sandbox', 'container', 'exec'];
  for (const kind of order) {
    for (const f of folded) {
      if (f.kind !== kind || f.state.value === 'absent') continue;
      noteLife(rt, f);
      if (f.state.value === 'deleted') continue;
      const entity = attach(rt, f);
      if (!entity) continue;
      entity.version = f.version;
      entity.savedVersion = f.savedVersion;
    }
  }
  return { eventsReplayed: events, snapshotsUsed };
}

type AnyContext = ContextOf<'exec'> & ContextOf<'container'> & ContextOf<'sandbox'>;

/** Counts the life a folded stream is (deleted ones included): the next create of its id gets the one after. */
function noteLife(rt: Kernel, f: Folded): void {
  const ctx = f.state.context as AnyContext;
  const key =
    f.kind === 'sandbox'
      ? lifeKey.sandbox(ctx.sandboxId)
      : f.kind === 'container'
        ? lifeKey.container(ctx.sandboxId, ctx.sandboxIncarnation ?? 1, ctx.containerId)
        : lifeKey.exec(
            ctx.sandboxId,
            ctx.sandboxIncarnation ?? 1,
            ctx.containerId,
            ctx.containerIncarnation ?? 1,
            ctx.execId,
          );
  rt.lives.note(key, ctx.incarnation);
}

/** Puts a loaded entity under its parent; one of an earlier life of its parent's id (or of a gone one) is dropped. */
function attach(rt: Kernel, f: Folded): AnyEntity | undefined {
  const ctx = f.state.context as AnyContext;
  if (f.kind === 'sandbox') {
    const s = new SandboxActor(ctx.sandboxId, f.state as SnapshotOf<'sandbox'>, ctx.incarnation);
    rt.sandboxes.set(s.id, s);
    return s;
  }
  const sandbox = rt.sandboxes.get(ctx.sandboxId);
  if (!sandbox || sandbox.incarnation !== (ctx.sandboxIncarnation ?? 1)) return undefined;
  if (f.kind === 'container') {
    const c = new ContainerActor(
      sandbox,
      ctx.containerId,
      f.state as SnapshotOf<'container'>,
      ctx.incarnation,
    );
    sandbox.containers.set(c.id, c);
    return c;
  }
  const container = sandbox.containers.get(ctx.containerId);
  if (!container || container.incarnation !== (ctx.containerIncarnation ?? 1)) return undefined;
  const e = new ExecActor(container, ctx.execId, f.state as SnapshotOf<'exec'>, ctx.incarnation);
  container.execs.set(e.id, e);
  return e;
}

/** Rebuilds the runtime's entities from the store; runs no effect and appends nothing. */
export function loadEntities(rt: Kernel, useSnapshots: boolean): Promise<LoadResult> {
  return useSnapshots ? foldFromSnapshots(rt) : foldWholeLog(rt);
}

// ---- reconciliation: what the world says, appended ---------------------------------------------------

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
        await record(sandbox, 'SandboxLost', { reason: 'the VM was gone when the daemon restarted' });
        t.lost.push(sandbox.id);
        return;
      }
      // A paused guest is frozen: its agent cannot answer until it is resumed. Ask QEMU first.
      const status = await hypervisor.status(sandbox.id);
      const frozen = status === 'paused';
      if (!frozen) {
        try {
          await agent.connect(sandbox.id, alive.agentSocket, { deadlineMs: rt.timeouts.connectAgent });
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
      if (state === 'running') await reconcileSize(rt, sandbox, record);
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
    else if (!['stopped', 'failed', 'deleted'].includes(c.state)) {
      await record(c, 'ContainerLost', { reason: `sandbox ${state}` });
    }
  }
}

type Record_ = (entity: AnyEntity, type: string, data: unknown) => Promise<unknown>;

/** Later asks to online what QEMU has, in case a device plugged just before a crash had not reached the guest's sysfs yet. */
const ONLINE_AGAIN_AFTER_MS = [1_000, 3_000] as const;

/**
 * sandbox.update hotplugs before it appends SandboxResized: a daemon killed in between leaves QEMU
 * bigger than the log. Asks QEMU (two QMP queries) and, when they differ, appends what it says and has
 * the guest online it: once now, and again a little later without holding up recovery (onlining is
 * idempotent; failures are only logged).
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
        await withDeadline(reconcileSandbox(rt, sandbox, t), rt.timeouts.reconcile, 'reconcile');
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
