// The actor runtime: commands checked against machines, persisted, then run; outcomes and happenings appended.

import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { type Logger, pino } from 'pino';
import type { Observable } from 'rxjs';
import type {
  Agent,
  ContainerResources,
  ContainerStats,
  ExitStatus,
  GuestDetails,
  NetInterface,
  NetRoute,
  ProcessInfo,
  ProcessSpec,
} from '../agent/index.js';
import { translateForGuest, validateBundle } from '../bundle/index.js';
import {
  AlreadyExists,
  asSandboxdError,
  ConcurrencyConflict,
  Internal,
  InvalidState,
  NotFound,
  SandboxdError,
} from '../errors/index.js';
import type { EntityKind, EventEnvelope, FailureData, NewEvent } from '../events/index.js';
import { correlation, deadlinesFrom, statePath, TransitionWatch } from '../explain/index.js';
import type { Accel, GuestImagePaths, Hypervisor, VmUsage } from '../hypervisor/index.js';
import { can, fed, initialSnapshot, persistSnapshot, step } from '../machines/index.js';
import { checkNetnsPath } from '../network/index.js';
import type { EventStore } from '../store/index.js';
import { withDeadline } from './deadline.js';
import {
  checkHostPortsFree,
  containerEffectDefinitions,
  type EffectContext,
  type EffectDefinition,
  execEffectDefinitions,
  type SandboxDirs,
  sandboxEffectDefinitions,
  vmNetworkOf,
  vmShapeOf,
} from './effects.js';
import {
  type AnyEntity,
  ContainerActor,
  type Entity,
  ExecActor,
  Lives,
  lifeKey,
  SandboxActor,
} from './entity.js';
import { checkContainerSources, StateDirGuard } from './host-paths.js';
import { withIntent } from './intent.js';
import { reconcileAll, reconcileContainers } from './recovery.js';
import { currentSize, growVm, planResize, type ResizeRequest, sameSize } from './resize.js';
import { type Happening, startPorts } from './supervision.js';
import type {
  Caller,
  ContainerView,
  CreateContainerParams,
  ExecView,
  Runtime,
  SandboxConfig,
  SandboxStats,
  SandboxView,
} from './types.js';

/** Every effect the machines name, plus the runtime's own deadlines. */
export type TimeoutName =
  | 'launchVm'
  | 'connectAgent'
  | 'initGuest'
  | 'releaseVm'
  | 'pauseVm'
  | 'resumeVm'
  | 'stopVm'
  | 'destroyVm'
  | 'createContainer'
  | 'startContainer'
  | 'pauseContainer'
  | 'resumeContainer'
  | 'removeContainer'
  | 'startProcess'
  /** Reconciliation of one sandbox after a restart. */
  | 'reconcile'
  /** How long shutdown waits for effects in flight. */
  | 'shutdown'
  /** Agent calls made directly for a command (stats, ps, kill, …). */
  | 'call'
  /** sandbox.update: until the guest shows the vCPUs and memory QEMU hotplugged. */
  | 'resizeVm';

/** Generous defaults: TCG boots take 5–20 s on these machines, more under load. */
export const defaultTimeouts: Readonly<Record<TimeoutName, number>> = {
  launchVm: 90_000,
  connectAgent: 90_000,
  initGuest: 30_000,
  releaseVm: 30_000,
  pauseVm: 15_000,
  /** Also covers comparing the containers of a sandbox found paused at recovery with its guest. */
  resumeVm: 60_000,
  stopVm: 60_000,
  destroyVm: 60_000,
  createContainer: 60_000,
  startContainer: 30_000,
  pauseContainer: 15_000,
  resumeContainer: 15_000,
  removeContainer: 30_000,
  startProcess: 30_000,
  reconcile: 30_000,
  shutdown: 15_000,
  call: 30_000,
  resizeVm: 60_000,
};

export interface RuntimeOptions {
  readonly store: EventStore;
  readonly hypervisor: Hypervisor;
  readonly agent: Agent;
  /** Root of per-sandbox dirs: `<stateDir>/sandboxes/<id>/{vm,shared}`. */
  readonly stateDir: string;
  /** The guest image to boot; required only once a sandbox starts. */
  readonly image?: () => Promise<GuestImagePaths>;
  readonly logger?: Logger;
  /** Per-effect deadlines in ms (an expired effect appends its …Failed event). */
  readonly timeouts?: Partial<Record<TimeoutName, number>>;
  /**
   * false: replay only — no reconciliation, no effects, commands refused (offline tools, benchmarks).
   * Default true.
   */
  readonly effects?: boolean;
  /** Load from stored snapshots + tails (default true); false folds the whole log from seq 1. */
  readonly snapshots?: boolean;
  /** How many sandboxes reconcile at once after a restart (default 8). */
  readonly reconcileConcurrency?: number;
  /**
   * Save an entity's snapshot once this many events followed its last one and it rests in a
   * non-transitional state (default 16; 0 = only on shutdown / saveSnapshots()).
   */
  readonly snapshotEvery?: number;
  /**
   * Make each effect's intent visible to the ports it calls, as currentIntent() (idempotency keys for fakes
   * and tracing). Off by default: on Node 20 AsyncLocalStorage turns on promise hooks for the whole process,
   * which cost the daemon ~20% of its API throughput (bench:api).
   */
  readonly traceIntents?: boolean;
}

/** What loading and reconciling found; `createRuntime` resolves after both. */
export interface RecoveryReport {
  readonly sandboxes: number;
  readonly containers: number;
  readonly execs: number;
  /** Events folded through machines while loading (snapshot tails, or the whole log). */
  readonly eventsReplayed: number;
  readonly snapshotsUsed: number;
  readonly loadMs: number;
  readonly reconcileMs: number;
  readonly reattached: readonly string[];
  readonly lost: readonly string[];
  /** Entities whose in-flight intent was settled (completed, retried or failed). */
  readonly settled: readonly { stream: string; from: string; how: 'completed' | 'retried' | 'failed' }[];
  /** Events appended by reconciliation. */
  readonly appended: number;
  readonly errors: readonly { sandboxId: string; message: string }[];
}

export interface RuntimeHandle extends Runtime {
  /** The report of the recovery `createRuntime` ran. */
  readonly recovery: RecoveryReport;
  /** Reconciles every sandbox with the world again (what startup did after loading). */
  reconcile(): Promise<RecoveryReport>;
  /** Saves a snapshot of every entity changed since its last one (also done by shutdown). */
  saveSnapshots(): Promise<number>;
  /** Resolves once no effect is in flight and every entity's queue is empty (tests, orderly shutdown). */
  idle(): Promise<void>;
}

const vmStates = new Set(['starting', 'running', 'pausing', 'paused', 'resuming', 'stopping']);
const downStates = new Set(['stopped', 'lost', 'failed', 'deleting']);
const containerEnded = new Set(['stopped', 'failed', 'deleting', 'deleted']);
const execEnded = new Set(['exited', 'failed']);
/** States an effect is in flight in: not worth a snapshot, recovery settles them from the log. */
const transitional = new Set(['starting', 'pausing', 'resuming', 'stopping', 'deleting', 'creating']);

/** How often the runtime looks for intents past their deadline (a warning and a metric each). */
const stuckCheckMs = 5000;

/** An event to record; `correlationId` says who asked (see src/explain correlation: api, recovery, supervision). */
type Asked = { type: string; data: unknown; correlationId?: string };

const supervised = {
  hypervisor: correlation.supervision('hypervisor'),
  agent: correlation.supervision('agent'),
  cascade: correlation.supervision('cascade'),
} as const;

function notFoundOf(entity: AnyEntity): NotFound {
  if (entity instanceof SandboxActor) return new NotFound('sandbox', entity.id);
  if (entity instanceof ContainerActor)
    return new NotFound('container', entity.id, { sandboxId: entity.sandbox.id });
  const c = entity.container;
  return new NotFound('exec', entity.id, { sandboxId: c.sandbox.id, containerId: c.id });
}

/** The failure data a …Failed event keeps. */
/** The incarnation as event data: only from the second life on, so first lives read as they always did. */
function lifeData(incarnation: number): { incarnation?: number } {
  return incarnation > 1 ? { incarnation } : {};
}

export function failureOf(step: string, err: SandboxdError): FailureData {
  return { step: (err.details.step as string | undefined) ?? step, kind: err.kind, message: err.message };
}

export class ActorRuntime implements RuntimeHandle {
  readonly sandboxes = new Map<string, SandboxActor>();
  readonly logger: Logger;
  readonly timeouts: Readonly<Record<TimeoutName, number>>;
  readonly effectsOn: boolean;
  recovery!: RecoveryReport;
  private closing = false;
  private lastAccel: Accel | undefined;
  private readonly effectCtx: EffectContext;
  private readonly traceIntents: boolean;
  private readonly pendingEffects = new Set<Promise<void>>();
  /** Effects in flight by entity stream, effect name and cause id (see startEffect). */
  private readonly effectsByCause = new Map<string, Promise<void>>();
  private retired: AnyEntity[] = [];
  /** The lives every id has had: a create after a delete takes the next (see lifeKey). */
  readonly lives = new Lives();
  /** Sandboxes found paused at recovery: their containers are reconciled once they run again. */
  readonly containersUnchecked = new Set<string>();

  /** Host paths bound into sandboxes stay clear of the state dir (checked here, so every client gets it). */
  readonly guard: StateDirGuard;
  /** Operations in flight and transition durations, fed by every event applied (events stuck, metrics). */
  readonly transitions: TransitionWatch;
  private readonly stuckTimer: NodeJS.Timeout | undefined;

  constructor(readonly options: RuntimeOptions) {
    this.guard = new StateDirGuard(options.stateDir);
    this.logger =
      options.logger ??
      pino({ name: 'sandboxd.actors', level: process.env.SANDBOXD_LOG_LEVEL ?? 'info' }, pino.destination(2));
    this.timeouts = { ...defaultTimeouts, ...options.timeouts };
    this.effectsOn = options.effects !== false;
    this.transitions = new TransitionWatch({ deadline: deadlinesFrom(this.timeouts) });
    if (this.effectsOn) {
      this.stuckTimer = setInterval(() => this.checkStuck(), stuckCheckMs);
      this.stuckTimer.unref();
    }
    const image =
      options.image ??
      (() => Promise.reject(new Internal('launchVm', 'no guest image configured (createRuntime: image)')));
    this.traceIntents = options.traceIntents === true;
    this.effectCtx = {
      hypervisor: options.hypervisor,
      agent: options.agent,
      logger: this.logger,
      dirs: (id) => this.dirs(id),
      image,
      guard: this.guard,
      afterResume: (sandbox) => this.reconcileAfterResume(sandbox),
    };
  }

  get store(): EventStore {
    return this.options.store;
  }
  get hypervisor(): Hypervisor {
    return this.options.hypervisor;
  }
  get agent(): Agent {
    return this.options.agent;
  }

  get accel(): Accel | undefined {
    return this.lastAccel;
  }

  dirs(sandboxId: string): SandboxDirs {
    const root = join(this.options.stateDir, 'sandboxes', sandboxId);
    return { root, vm: join(root, 'vm'), shared: join(root, 'shared') };
  }

  // ---- the core: check, persist, transition, act -------------------------------------------------

  /**
   * Appends `event` to the entity's stream if its machine accepts it now, then transitions and
   * starts the effects the transition names. With `command`, a refusal throws InvalidState and
   * writes nothing; without (an outcome or a happening), a refusal drops the event (it came late).
   */
  record(
    entity: AnyEntity,
    event: Asked,
    opts: { command?: string; causationId?: string } = {},
  ): Promise<EventEnvelope | undefined> {
    return entity.exclusive(() => this.recordInTurn(entity, event, opts));
  }

  /** `record`'s body, for work that already holds the entity's turn (see updateSandbox). */
  private async recordInTurn(
    entity: AnyEntity,
    event: Asked,
    opts: { command?: string; causationId?: string },
  ): Promise<EventEnvelope | undefined> {
    const candidate = { type: event.type, data: event.data } as never;
    if (!can(entity.kind, entity.snapshot as never, candidate)) {
      if (opts.command) throw new InvalidState(entity.kind, entity.id, entity.state, opts.command);
      this.logger.debug(
        { stream: entity.stream, type: event.type, state: entity.state },
        'late event dropped',
      );
      return undefined;
    }
    const newEvent: NewEvent = {
      type: event.type,
      data: event.data,
      ...(opts.causationId ? { causationId: opts.causationId } : {}),
      ...(event.correlationId ? { correlationId: event.correlationId } : {}),
    };
    const result = await this.store.append(entity.stream, entity.version, [newEvent]);
    const envelope = result.events[0]!;
    this.apply(entity, envelope, this.effectsOn);
    this.maybeSnapshot(entity);
    return envelope;
  }

  /** Saves a snapshot in the background when enough events piled up since the last one (a cache: failures only logged). */
  private maybeSnapshot(entity: AnyEntity): void {
    const every = this.options.snapshotEvery ?? 16;
    if (every <= 0 || entity.version - entity.savedVersion < every || transitional.has(entity.state)) return;
    const version = entity.version;
    const state = persistSnapshot(entity.kind, entity.snapshot as never);
    entity.savedVersion = version;
    this.store
      .saveSnapshot({ stream: entity.stream, version, state })
      .catch((err) => this.logger.warn({ err, stream: entity.stream }, 'saving a snapshot failed'));
  }

  /** Folds one stored event into the entity; in live mode also supervises, cascades and starts effects. */
  apply(entity: AnyEntity, envelope: EventEnvelope, live: boolean): void {
    const before = entity.state;
    const from = statePath(entity.value);
    const { snapshot, effects } = step(entity.kind, entity.snapshot as never, fed(envelope) as never);
    entity.snapshot = snapshot as never;
    entity.version = envelope.version;
    const to = statePath(snapshot.value);
    this.transitions.feed(entity.stream, entity.kind, { event: envelope, from, to, effects }, live);
    if (entity instanceof SandboxActor) this.afterSandbox(entity, before, live);
    else if (entity instanceof ContainerActor) this.afterContainer(entity, before, live);
    else if (entity.state === 'deleted') {
      entity.container.execs.delete(entity.id);
      this.retire(entity);
    }
    entity.notify();
    if (live) for (const name of effects) this.startEffect(entity, name, envelope, false);
  }

  private afterSandbox(sandbox: SandboxActor, before: string, live: boolean): void {
    const state = sandbox.state;
    const handle = sandbox.context.handle;
    if (handle) this.lastAccel = handle.accel;
    if (state === 'deleted') {
      this.sandboxes.delete(sandbox.id);
      sandbox.ports?.stop();
      sandbox.ports = undefined;
      this.retire(sandbox);
      for (const c of sandbox.containers.values()) {
        this.retire(c);
        for (const e of c.execs.values()) this.retire(e);
      }
      return;
    }
    if (!live) return;
    const vmUp = vmStates.has(state) && handle !== undefined;
    if (vmUp && !sandbox.ports) this.supervise(sandbox);
    if (!vmUp && sandbox.ports) {
      sandbox.ports.stop();
      sandbox.ports = undefined;
      this.fireAndLog(this.agent.disconnect(sandbox.id));
    }
    if (downStates.has(state) && !downStates.has(before)) {
      // Its VM is gone: nothing is left to compare with a guest on a later resume.
      this.containersUnchecked.delete(sandbox.id);
      const reason = `sandbox ${state}`;
      for (const c of sandbox.containers.values()) {
        if (!containerEnded.has(c.state))
          this.fireAndLog(
            this.record(c, { type: 'ContainerLost', data: { reason }, correlationId: supervised.cascade }),
          );
        for (const e of c.execs.values()) this.loseExec(e, reason);
      }
    }
  }

  private afterContainer(container: ContainerActor, before: string, live: boolean): void {
    const state = container.state;
    if (state === 'deleted') {
      container.sandbox.containers.delete(container.id);
      this.retire(container);
      for (const e of container.execs.values()) this.retire(e);
      return;
    }
    // The init's end takes every exec of the container with it.
    if (live && containerEnded.has(state) && !containerEnded.has(before)) {
      for (const e of container.execs.values()) this.loseExec(e, `container ${state}`);
    }
  }

  private loseExec(exec: ExecActor, reason: string): void {
    if (!execEnded.has(exec.state))
      this.fireAndLog(
        this.record(exec, { type: 'ProcessLost', data: { reason }, correlationId: supervised.cascade }),
      );
  }

  private fireAndLog(work: Promise<unknown>): void {
    work.catch((err) => this.logger.error({ err }, 'appending an outcome failed'));
  }

  private definitionOf(entity: AnyEntity, name: string): EffectDefinition<AnyEntity> | undefined {
    const table: Readonly<Record<string, EffectDefinition<never>>> =
      entity.kind === 'sandbox'
        ? sandboxEffectDefinitions
        : entity.kind === 'container'
          ? containerEffectDefinitions
          : execEffectDefinitions;
    return table[name] as EffectDefinition<AnyEntity> | undefined;
  }

  /**
   * The containers of a sandbox found paused at recovery are compared with its guest while it is
   * still resuming: once it runs, commands create and start containers that recovery must not take
   * for ones whose intent never settled (it would run their effect a second time, or declare them lost).
   */
  private async reconcileAfterResume(sandbox: SandboxActor): Promise<void> {
    if (!this.containersUnchecked.delete(sandbox.id)) return;
    try {
      await withDeadline(reconcileContainers(this, sandbox), this.timeouts.reconcile, 'reconcile');
    } catch (err) {
      this.logger.error({ sandboxId: sandbox.id, err }, 'reconciling containers after resume failed');
    }
  }

  /**
   * Runs an effect outside the entity's queue; its outcome comes back through `record`. An effect
   * already running for the same cause is joined, not started again: two runs of one intent race on
   * the same host files and guest objects (the cause's id is the idempotency key).
   */
  startEffect(entity: AnyEntity, name: string, cause: EventEnvelope, retry: boolean): Promise<void> {
    const key = `${entity.stream} ${name} ${cause.id}`;
    const running = this.effectsByCause.get(key);
    if (running) {
      this.logger.warn(
        { ...this.idsOf(entity), effect: name, causationId: cause.id, retry },
        'effect already running for this cause: joined',
      );
      return running;
    }
    const run = this.runEffect(entity, name, cause, retry);
    this.pendingEffects.add(run);
    this.effectsByCause.set(key, run);
    run.finally(() => {
      this.pendingEffects.delete(run);
      this.effectsByCause.delete(key);
    });
    return run;
  }

  /** Resolves once no effect of `entity` is running (their failures are theirs to record). */
  private async effectsSettled(entity: AnyEntity): Promise<void> {
    const prefix = `${entity.stream} `;
    const running = [...this.effectsByCause].filter(([key]) => key.startsWith(prefix)).map(([, run]) => run);
    await Promise.allSettled(running);
  }

  private async runEffect(
    entity: AnyEntity,
    name: string,
    cause: EventEnvelope,
    retry: boolean,
  ): Promise<void> {
    const def = this.definitionOf(entity, name);
    const log = this.logger.child({ ...this.idsOf(entity), effect: name, causationId: cause.id });
    if (!def) {
      log.error('no implementation bound for effect');
      return;
    }
    const controller = new AbortController();
    const untrack = entity.track(controller);
    // A cause that names its own timeoutMs (a stop's grace, then its powerdown) gets that much longer, twice.
    const asked = (cause.data as { timeoutMs?: unknown } | undefined)?.timeoutMs;
    const timeoutMs =
      (this.timeouts[name as TimeoutName] ?? this.timeouts.call) +
      (typeof asked === 'number' ? 2 * asked : 0);
    try {
      log.debug({ retry }, 'effect started');
      const run = () =>
        withDeadline(
          def.run({ ctx: this.effectCtx, entity, cause, signal: controller.signal, timeoutMs }),
          timeoutMs,
          name,
          { controller },
        );
      const outcome = this.traceIntents
        ? await withIntent({ eventId: cause.id, effect: name, retry }, run)
        : await run();
      const by = retry ? { correlationId: correlation.recovery } : {};
      for (const e of outcome) await this.record(entity, { ...e, ...by }, { causationId: cause.id });
    } catch (err) {
      const error = asSandboxdError(err, name);
      log.warn({ err: error }, 'effect failed');
      if (def.failure) {
        entity.lastError = error;
        try {
          await this.record(
            entity,
            {
              type: def.failure,
              data: { error: failureOf(name, error) },
              ...(retry ? { correlationId: correlation.recovery } : {}),
            },
            { causationId: cause.id },
          );
        } catch (appendErr) {
          log.error({ err: appendErr }, 'appending the failure failed');
        }
      }
    } finally {
      untrack();
    }
  }

  private idsOf(entity: AnyEntity): Record<string, string> {
    if (entity instanceof SandboxActor) return { sandboxId: entity.id };
    if (entity instanceof ContainerActor) return { sandboxId: entity.sandbox.id, containerId: entity.id };
    return { sandboxId: entity.container.sandbox.id, containerId: entity.container.id, execId: entity.id };
  }

  // ---- supervision: the hypervisor and agent child actors ------------------------------------------

  supervise(sandbox: SandboxActor): void {
    if (!this.effectsOn || sandbox.ports) return;
    sandbox.ports = startPorts({
      sandboxId: sandbox.id,
      hypervisor: this.hypervisor,
      agent: this.agent,
      report: (h) => this.onHappening(sandbox, h),
      onError: (source, err) => this.logger.warn({ sandboxId: sandbox.id, source, err }, 'event feed failed'),
    });
  }

  private onHappening(sandbox: SandboxActor, h: Happening): void {
    if (this.closing) return;
    if (h.source === 'hypervisor') {
      if (h.event.type === 'exited') {
        this.fireAndLog(
          this.record(sandbox, {
            type: 'VmExited',
            data: { reason: h.event.reason },
            correlationId: supervised.hypervisor,
          }),
        );
      } else {
        this.logger.info({ sandboxId: sandbox.id, vmEvent: h.event.type }, 'VM event');
      }
      return;
    }
    const e = h.event;
    const container = sandbox.containers.get(e.containerId);
    if (!container) {
      this.logger.debug(
        { sandboxId: sandbox.id, containerId: e.containerId },
        'event for an unknown container',
      );
      return;
    }
    if (e.type === 'oom') {
      this.fireAndLog(
        this.record(container, { type: 'ContainerOomKilled', data: {}, correlationId: supervised.agent }),
      );
      return;
    }
    const { exitCode, signal, oomKilled } = e.status;
    const exit = { exitCode, ...(signal === undefined ? {} : { signal }) };
    if (e.execId === '') {
      this.fireAndLog(
        this.record(container, {
          type: 'ContainerExited',
          data: { ...exit, oomKilled: oomKilled === true },
          correlationId: supervised.agent,
        }),
      );
      return;
    }
    const exec = container.execs.get(e.execId);
    if (exec) {
      const data = oomKilled === undefined ? exit : { ...exit, oomKilled };
      this.fireAndLog(this.record(exec, { type: 'ProcessExited', data, correlationId: supervised.agent }));
    }
  }

  // ---- lookups and views ----------------------------------------------------------------------------

  /** Refuses commands while closing or read-only; returns who asks (the correlationId of the command's event). */
  private open(command: string): string {
    if (this.closing) throw new InvalidState('runtime', 'sandboxd', 'shutting down', command);
    if (!this.effectsOn) throw new InvalidState('runtime', 'sandboxd', 'read-only (effects off)', command);
    return correlation.api(command, this.caller?.connection);
  }

  /** Who calls now: set by `asking` for the synchronous part of an API handler (commands read it at entry). */
  private caller: Caller | undefined;

  asking<T>(caller: Caller, fn: () => T): T {
    const outer = this.caller;
    this.caller = caller;
    try {
      return fn();
    } finally {
      this.caller = outer;
    }
  }

  sandbox(id: string): SandboxActor {
    const s = this.sandboxes.get(id);
    if (!s || s.state === 'absent') throw new NotFound('sandbox', id);
    return s;
  }

  container(sandboxId: string, id: string): ContainerActor {
    const c = this.sandbox(sandboxId).containers.get(id);
    if (!c || c.state === 'absent') throw new NotFound('container', id, { sandboxId });
    return c;
  }

  exec(sandboxId: string, containerId: string, id: string): ExecActor {
    const e = this.container(sandboxId, containerId).execs.get(id);
    if (!e || e.state === 'absent') throw new NotFound('exec', id, { sandboxId, containerId });
    return e;
  }

  /** The sandbox, also while its create is pending (commands then wait for its turn, see `inTurn`). */
  private sandboxEntry(id: string): SandboxActor {
    const s = this.sandboxes.get(id);
    if (!s) throw new NotFound('sandbox', id);
    return s;
  }

  private containerEntry(sandboxId: string, id: string): ContainerActor {
    const c = this.sandbox(sandboxId).containers.get(id);
    if (!c) throw new NotFound('container', id, { sandboxId });
    return c;
  }

  private execEntry(sandboxId: string, containerId: string, id: string): ExecActor {
    const e = this.containerEntry(sandboxId, containerId).execs.get(id);
    if (!e) throw new NotFound('exec', id, { sandboxId, containerId });
    return e;
  }

  /**
   * Runs a command's checks and append in its arrival turn on `entity` (Entity.admit): after every earlier
   * command on it, a pending create included. An entity whose create was refused or failed is NotFound.
   */
  private inTurn<T>(entity: AnyEntity, fn: () => Promise<T>): Promise<T> {
    return entity.admit(async () => {
      if (entity.state === 'absent') throw notFoundOf(entity);
      return fn();
    });
  }

  private requireState(entity: AnyEntity, allowed: readonly string[], command: string): void {
    if (!allowed.includes(entity.state))
      throw new InvalidState(entity.kind, entity.id, entity.state, command);
  }

  private requireAgent(sandbox: SandboxActor, command: string): void {
    if (sandbox.state !== 'running') {
      throw new InvalidState('sandbox', sandbox.id, sandbox.state, command);
    }
  }

  sandboxView(s: SandboxActor): SandboxView {
    const c = s.context;
    const error = c.error?.message ?? c.lostReason;
    const size = currentSize(vmShapeOf(c.config), c.size);
    return {
      id: s.id,
      incarnation: s.incarnation,
      state: s.state,
      config: c.config,
      vcpus: size.vcpus,
      memoryMiB: size.memoryMiB,
      ...(c.handle ? { pid: c.handle.pid, accel: c.handle.accel } : {}),
      containers: [...s.containers.keys()],
      createdAt: c.createdAt,
      version: s.version,
      ...(error === undefined ? {} : { error }),
      ...(c.guestNetwork ? { guestNetwork: c.guestNetwork } : {}),
    };
  }

  containerView(c: ContainerActor): ContainerView {
    const x = c.context;
    return {
      sandboxId: c.sandbox.id,
      id: c.id,
      incarnation: c.incarnation,
      state: c.state,
      bundle: x.bundle,
      ...(x.pid === undefined ? {} : { pid: x.pid }),
      ...(x.exit ? { exit: x.exit } : {}),
      execs: [...c.execs.keys()],
      createdAt: x.createdAt,
      ...(x.startedAt ? { startedAt: x.startedAt } : {}),
      ...(x.exitedAt ? { exitedAt: x.exitedAt } : {}),
      annotations: x.annotations ?? {},
      terminal: x.terminal === true,
      version: c.version,
    };
  }

  execView(e: ExecActor): ExecView {
    const x = e.context;
    return {
      sandboxId: x.sandboxId,
      containerId: x.containerId,
      id: e.id,
      incarnation: e.incarnation,
      state: e.state,
      process: x.process,
      ...(x.pid === undefined ? {} : { pid: x.pid }),
      ...(x.exit ? { exit: x.exit } : {}),
      version: e.version,
    };
  }

  /** Appends a command's event, then waits until the entity leaves the transitional state it entered. */
  private async commandAndWait(
    entity: AnyEntity,
    command: string,
    event: Asked,
    transitional: readonly string[],
    success: readonly string[],
    checks?: () => Promise<void> | void,
  ): Promise<void> {
    await this.inTurn(entity, async () => {
      await checks?.();
      entity.lastError = undefined;
      await this.record(entity, event, { command });
    });
    await this.settledAs(entity, command, transitional, success);
  }

  /** Waits until the entity leaves `transitional`; throws its failure unless it reached a `success` state. */
  private async settledAs(
    entity: AnyEntity,
    command: string,
    transitional: readonly string[],
    success: readonly string[],
  ): Promise<void> {
    await entity.settled((s) => !transitional.includes(s));
    if (!success.includes(entity.state)) {
      // No failure of its own: another command (a forced delete, a stop) took the entity elsewhere first.
      throw (
        entity.lastError ??
        new SandboxdError(
          'Conflict',
          'CONFLICT',
          `${command} of ${entity.kind} ${JSON.stringify(entity.id)} did not complete: another command left it ${entity.state}`,
          { entity: entity.kind, id: entity.id, state: entity.state, command },
        )
      );
    }
  }

  // ---- Runtime: sandboxes ------------------------------------------------------------------------

  async createSandbox(id: string, config: SandboxConfig): Promise<SandboxView> {
    const by = this.open('sandbox.create');
    // A namespace that is missing or not one is refused before anything is recorded (src/network).
    if (typeof config.network === 'object') await checkNetnsPath(config.network.path);
    if (this.sandboxes.has(id)) throw new AlreadyExists('sandbox', id);
    // The id is taken now: commands for it that arrive meanwhile wait for this create's turn to end.
    // A deleted sandbox's stream stays in the log; its id lives again in a stream of its own.
    const key = lifeKey.sandbox(id);
    const incarnation = this.lives.next(key);
    const sandbox = new SandboxActor(id, initialSnapshot('sandbox'), incarnation);
    this.sandboxes.set(id, sandbox);
    return sandbox.admit(async () => {
      try {
        await this.record(
          sandbox,
          {
            type: 'SandboxCreated',
            data: { sandboxId: id, config, ...lifeData(incarnation) },
            correlationId: by,
          },
          { command: 'create' },
        );
        this.lives.note(key, incarnation);
      } catch (err) {
        this.sandboxes.delete(id);
        if (err instanceof ConcurrencyConflict) throw new AlreadyExists('sandbox', id);
        throw err;
      }
      return this.sandboxView(sandbox);
    });
  }

  async startSandbox(id: string): Promise<SandboxView> {
    const by = this.open('sandbox.start');
    const s = this.sandboxEntry(id);
    await this.commandAndWait(
      s,
      'start',
      { type: 'SandboxStartRequested', data: {}, correlationId: by },
      ['starting'],
      ['running'],
      async () => {
        // A forwarded port this host cannot bind is refused before anything is recorded: the sandbox stays
        // startable once the port is free (after a recorded failure it could only be deleted).
        const startable = can('sandbox', s.snapshot, { type: 'SandboxStartRequested', data: {} } as never);
        const network = vmNetworkOf(s.context.config);
        if (network && startable) await checkHostPortsFree(network, true);
        // A start after a failed one waits for that VM's release, which would otherwise race the new launch.
        if (startable) await this.effectsSettled(s);
      },
    );
    return this.sandboxView(s);
  }

  async stopSandbox(id: string, options: { timeoutMs?: number } = {}): Promise<SandboxView> {
    const by = this.open('sandbox.stop');
    const s = this.sandboxEntry(id);
    const data = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
    await this.commandAndWait(
      s,
      'stop',
      { type: 'SandboxStopRequested', data, correlationId: by },
      ['stopping'],
      ['stopped'],
    );
    return this.sandboxView(s);
  }

  async pauseSandbox(id: string): Promise<SandboxView> {
    const by = this.open('sandbox.pause');
    const s = this.sandboxEntry(id);
    await this.commandAndWait(
      s,
      'pause',
      { type: 'SandboxPauseRequested', data: {}, correlationId: by },
      ['pausing'],
      ['paused'],
    );
    return this.sandboxView(s);
  }

  async resumeSandbox(id: string): Promise<SandboxView> {
    const by = this.open('sandbox.resume');
    const s = this.sandboxEntry(id);
    await this.commandAndWait(
      s,
      'resume',
      { type: 'SandboxResumeRequested', data: {}, correlationId: by },
      ['resuming'],
      ['running'],
    );
    return this.sandboxView(s);
  }

  async deleteSandbox(id: string, options: { force?: boolean } = {}): Promise<void> {
    const by = this.open('sandbox.delete');
    const s = this.sandboxEntry(id);
    const force = options.force === true;
    await this.commandAndWait(
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
   * Grows the running VM (see Runtime.updateSandbox). The whole of it, checks, hotplug, onlining and
   * the append, holds the sandbox's turn: no pause, stop or outcome of its slips in between, and two
   * updates never race for the same DIMM slot.
   */
  async updateSandbox(id: string, request: ResizeRequest): Promise<SandboxView> {
    const by = this.open('sandbox.update');
    const s = this.sandboxEntry(id);
    await this.inTurn(s, () =>
      s.exclusive(async () => {
        const probe = { type: 'SandboxResized', data: { vcpus: 1, memoryMiB: 1 } } as never;
        if (!can('sandbox', s.snapshot, probe)) throw new InvalidState('sandbox', id, s.state, 'update');
        const shape = vmShapeOf(s.context.config);
        const from = currentSize(shape, s.context.size);
        const to = planResize(shape, from, request);
        if (sameSize(from, to)) return;
        const ports = { hypervisor: this.hypervisor, agent: this.agent, logger: this.logger };
        const { reached, error } = await growVm(ports, id, from, to, this.timeouts.resizeVm);
        // Whatever QEMU took is a fact, even when a later step failed: the log must say so.
        if (!sameSize(from, reached)) {
          await this.recordInTurn(
            s,
            { type: 'SandboxResized', data: reached, correlationId: by },
            { command: 'update' },
          );
        }
        if (error) throw error;
      }),
    );
    return this.sandboxView(s);
  }

  getSandbox(id: string): SandboxView {
    return this.sandboxView(this.sandbox(id));
  }

  listSandboxes(): SandboxView[] {
    return [...this.sandboxes.values()].filter((s) => s.state !== 'absent').map((s) => this.sandboxView(s));
  }

  async vmUsage(id: string): Promise<VmUsage | undefined> {
    const s = this.sandbox(id);
    if (!s.context.handle || !this.hypervisor.usage) return undefined;
    return this.call(this.hypervisor.usage(id), 'vm usage');
  }

  async sandboxStats(id: string): Promise<SandboxStats> {
    const s = this.sandbox(id);
    this.requireAgent(s, 'stats');
    const containers: Record<string, ContainerStats> = {};
    const [vm] = await Promise.all([
      this.hypervisor.usage ? this.call(this.hypervisor.usage(id), 'vm usage') : undefined,
      ...[...s.containers.values()]
        .filter((c) => c.state === 'running' || c.state === 'paused')
        .map(async (c) => {
          containers[c.id] = await this.call(this.agent.statsContainer(id, c.id), 'statsContainer');
        }),
    ]);
    return { sandbox: this.sandboxView(s), ...(vm ? { vm } : {}), containers };
  }

  private call<T>(work: Promise<T>, step: string): Promise<T> {
    return withDeadline(work, this.timeouts.call, step);
  }

  // ---- Runtime: containers -----------------------------------------------------------------------

  async createContainer(params: CreateContainerParams): Promise<ContainerView> {
    const by = this.open('container.create');
    const s = this.sandbox(params.sandboxId);
    if (s.state !== 'running') throw new InvalidState('sandbox', s.id, s.state, 'container.create');
    if (s.containers.has(params.id)) throw new AlreadyExists('container', params.id, { sandboxId: s.id });
    // The id is taken now; commands for it wait until this create completed or failed (its whole turn).
    const key = lifeKey.container(s.id, s.incarnation, params.id);
    const incarnation = this.lives.next(key);
    const c = new ContainerActor(s, params.id, initialSnapshot('container'), incarnation);
    s.containers.set(params.id, c);
    return c.admit(async () => {
      try {
        // A bundle the VM cannot run, or host paths that reach the state dir, are refused before anything
        // is recorded (the effect reads the bundle again, and binds only what it checks once more).
        const bundle = await validateBundle(params.bundle, 'bundle');
        const translation = translateForGuest(bundle.spec, bundle.path);
        await checkContainerSources(this.guard, translation, params.mounts);
        const { annotations } = translation;
        const terminal = params.process?.terminal ?? bundle.spec.process?.terminal === true;
        const data = {
          sandboxId: s.id,
          containerId: params.id,
          ...lifeData(incarnation),
          ...(s.incarnation > 1 ? { sandboxIncarnation: s.incarnation } : {}),
          bundle: bundle.path,
          ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
          ...(terminal ? { terminal } : {}),
          ...(params.process ? { process: params.process } : {}),
          ...(params.resources ? { resources: params.resources } : {}),
          ...(params.mounts && params.mounts.length > 0 ? { mounts: params.mounts } : {}),
        };
        c.lastError = undefined;
        await this.record(
          c,
          { type: 'ContainerCreateRequested', data, correlationId: by },
          { command: 'create' },
        );
        await this.settledAs(c, 'create', ['creating'], ['created']);
      } catch (err) {
        if (c.state === 'absent') s.containers.delete(params.id);
        if (err instanceof ConcurrencyConflict)
          throw new AlreadyExists('container', params.id, { sandboxId: s.id });
        throw err;
      } finally {
        if (c.version > 0) this.lives.note(key, incarnation);
      }
      return this.containerView(c);
    });
  }

  async startContainer(sandboxId: string, id: string): Promise<ContainerView> {
    const by = this.open('container.start');
    const c = this.containerEntry(sandboxId, id);
    await this.commandAndWait(
      c,
      'start',
      { type: 'ContainerStartRequested', data: {}, correlationId: by },
      ['starting'],
      // A short-lived init may have ended before the start's reply came back: that start succeeded.
      ['running', 'paused', 'stopped'],
      () => this.requireAgent(c.sandbox, 'container.start'),
    );
    return this.containerView(c);
  }

  async killContainer(sandboxId: string, id: string, signal: string, all = false): Promise<void> {
    this.open('container.kill');
    const c = this.containerEntry(sandboxId, id);
    await this.inTurn(c, async () => {
      this.requireAgent(c.sandbox, 'container.kill');
      // Not a created container: its init waits at the start gate, where a signal changes nothing the log could
      // say (and breaks the later start). Start it, or delete it.
      this.requireState(c, ['starting', 'running', 'pausing', 'paused', 'resuming'], `kill ${signal}`);
      await this.call(this.agent.signalProcess(sandboxId, id, '', signal, all), 'signalProcess');
    });
  }

  /** Resolves with the container's last view: how and when its init ended, if it did before the delete. */
  async deleteContainer(
    sandboxId: string,
    id: string,
    options: { force?: boolean } = {},
  ): Promise<ContainerView> {
    const by = this.open('container.delete');
    const c = this.containerEntry(sandboxId, id);
    const force = options.force === true;
    await this.commandAndWait(
      c,
      force ? 'delete --force' : 'delete',
      { type: 'ContainerDeleteRequested', data: { force }, correlationId: by },
      ['deleting'],
      ['deleted'],
      () => {
        // A frozen guest cannot remove anything; removing only the host side would leave it running there.
        if (['pausing', 'paused', 'resuming'].includes(c.sandbox.state)) {
          throw new InvalidState('sandbox', sandboxId, c.sandbox.state, 'container.delete');
        }
      },
    );
    return this.containerView(c);
  }

  async pauseContainer(sandboxId: string, id: string): Promise<ContainerView> {
    const by = this.open('container.pause');
    const c = this.containerEntry(sandboxId, id);
    await this.commandAndWait(
      c,
      'pause',
      { type: 'ContainerPauseRequested', data: {}, correlationId: by },
      ['pausing'],
      ['paused'],
      () => this.requireAgent(c.sandbox, 'container.pause'),
    );
    return this.containerView(c);
  }

  async resumeContainer(sandboxId: string, id: string): Promise<ContainerView> {
    const by = this.open('container.resume');
    const c = this.containerEntry(sandboxId, id);
    await this.commandAndWait(
      c,
      'resume',
      { type: 'ContainerResumeRequested', data: {}, correlationId: by },
      ['resuming'],
      ['running'],
      () => this.requireAgent(c.sandbox, 'container.resume'),
    );
    return this.containerView(c);
  }

  getContainer(sandboxId: string, id: string): ContainerView {
    return this.containerView(this.container(sandboxId, id));
  }

  listContainers(sandboxId: string): ContainerView[] {
    return [...this.sandbox(sandboxId).containers.values()]
      .filter((c) => c.state !== 'absent')
      .map((c) => this.containerView(c));
  }

  async containerStats(sandboxId: string, id: string): Promise<ContainerStats> {
    const c = this.container(sandboxId, id);
    this.requireAgent(c.sandbox, 'container.stats');
    return this.call(this.agent.statsContainer(sandboxId, id), 'statsContainer');
  }

  async updateContainer(
    sandboxId: string,
    id: string,
    resources: ContainerResources,
  ): Promise<ContainerView> {
    const by = this.open('container.update');
    const c = this.container(sandboxId, id);
    this.requireAgent(c.sandbox, 'container.update');
    const event = { type: 'ContainerUpdated', data: { resources }, correlationId: by };
    if (!can('container', c.snapshot, event as never)) {
      throw new InvalidState('container', id, c.state, 'update');
    }
    await this.call(this.agent.updateContainer(sandboxId, id, resources), 'updateContainer');
    await this.record(c, event, { command: 'update' });
    return this.containerView(c);
  }

  async containerPs(sandboxId: string, id: string): Promise<ProcessInfo[]> {
    const c = this.container(sandboxId, id);
    this.requireAgent(c.sandbox, 'container.ps');
    return (await this.call(this.agent.listProcesses(sandboxId, id, 'json'), 'listProcesses')).processes;
  }

  async waitContainer(sandboxId: string, id: string): Promise<ExitStatus> {
    const entry = this.containerEntry(sandboxId, id);
    // A wait that arrived after a create (or start) begins once those had their turn.
    const c = await entry.admit(async () => this.container(sandboxId, id));
    await c.settled((s) => containerEnded.has(s));
    const exit = c.context.exit;
    if (!exit) throw new InvalidState('container', id, c.state, 'wait (it never ran)');
    return exit;
  }

  // ---- Runtime: execs ----------------------------------------------------------------------------

  /**
   * Starts a process in a running container: a new exec with `process`, or (no process) the exec registered
   * before by createExec. Resolves once it runs (or already exited).
   */
  async startExec(
    sandboxId: string,
    containerId: string,
    execId: string,
    process?: ProcessSpec,
  ): Promise<ExecView> {
    const by = this.open('exec.start');
    const c = this.containerEntry(sandboxId, containerId);
    if (process === undefined) {
      const registered = this.execEntry(sandboxId, containerId, execId);
      await this.inTurn(c, async () => undefined);
      this.requireAgent(c.sandbox, 'exec.start');
      this.requireState(c, ['running'], 'exec');
      await this.commandAndWait(
        registered,
        'start',
        { type: 'ExecStartRequested', data: {}, correlationId: by },
        ['starting'],
        ['running', 'exited'],
      );
      return this.execView(registered);
    }
    return this.newExec(c, execId, 'ExecRequested', process, by);
  }

  /** Registers an exec in a running container without starting it (containerd's Exec before its Start). */
  async createExec(
    sandboxId: string,
    containerId: string,
    execId: string,
    process: ProcessSpec,
  ): Promise<ExecView> {
    const by = this.open('exec.create');
    return this.newExec(this.containerEntry(sandboxId, containerId), execId, 'ExecCreated', process, by);
  }

  /** Removes an exec's record once it is no longer running (exited, failed, or never started): its id is free again. */
  async deleteExec(sandboxId: string, containerId: string, execId: string): Promise<void> {
    const by = this.open('exec.delete');
    const e = this.execEntry(sandboxId, containerId, execId);
    await e.admit(() =>
      this.record(e, { type: 'ExecDeleted', data: {}, correlationId: by }, { command: 'delete' }),
    );
  }

  private newExec(
    c: ContainerActor,
    execId: string,
    type: 'ExecRequested' | 'ExecCreated',
    process: ProcessSpec,
    by: string,
  ): Promise<ExecView> {
    const sandboxId = c.sandbox.id;
    const containerId = c.id;
    if (c.execs.has(execId)) throw new AlreadyExists('exec', execId, { sandboxId, containerId });
    const key = lifeKey.exec(sandboxId, c.sandbox.incarnation, containerId, c.incarnation, execId);
    const incarnation = this.lives.next(key);
    // The id is taken now; commands for it wait until this start completed or failed (its whole turn).
    const e = new ExecActor(c, execId, initialSnapshot('exec'), incarnation);
    c.execs.set(execId, e);
    return e.admit(async () => {
      try {
        // The container's own earlier commands go first, and a start of it among them ends first (without
        // holding the container's turn meanwhile: a forced delete of it still goes ahead).
        await this.inTurn(c, async () => undefined);
        await c.settled((state) => state !== 'starting' && state !== 'resuming');
        if (type === 'ExecRequested') this.requireAgent(c.sandbox, 'exec.start');
        this.requireState(c, ['running'], 'exec');
        e.lastError = undefined;
        const data = {
          sandboxId,
          containerId,
          execId,
          ...lifeData(incarnation),
          ...(c.sandbox.incarnation > 1 ? { sandboxIncarnation: c.sandbox.incarnation } : {}),
          ...(c.incarnation > 1 ? { containerIncarnation: c.incarnation } : {}),
          process,
        };
        await this.record(
          e,
          { type, data, correlationId: by },
          { command: type === 'ExecCreated' ? 'exec create' : 'exec' },
        );
        if (type === 'ExecRequested') await this.settledAs(e, 'exec', ['starting'], ['running', 'exited']);
      } catch (err) {
        if (e.state === 'absent') c.execs.delete(execId);
        if (err instanceof ConcurrencyConflict)
          throw new AlreadyExists('exec', execId, { sandboxId, containerId });
        throw err;
      } finally {
        if (e.version > 0) this.lives.note(key, incarnation);
      }
      return this.execView(e);
    });
  }

  async waitExec(sandboxId: string, containerId: string, execId: string): Promise<ExitStatus> {
    const entry = this.execEntry(sandboxId, containerId, execId);
    const e = await entry.admit(async () => this.exec(sandboxId, containerId, execId));
    await e.settled((s) => execEnded.has(s));
    const exit = e.context.exit;
    if (!exit) throw new InvalidState('exec', execId, e.state, 'wait (it never ran)');
    return exit;
  }

  async killExec(sandboxId: string, containerId: string, execId: string, signal: string): Promise<void> {
    this.open('exec.kill');
    const e = this.execEntry(sandboxId, containerId, execId);
    await this.inTurn(e, async () => {
      this.requireAgent(e.container.sandbox, 'exec.kill');
      this.requireState(e, ['running'], `kill ${signal}`);
      await this.call(
        this.agent.signalProcess(sandboxId, containerId, execId, signal, false),
        'signalProcess',
      );
    });
  }

  async resizeExec(sandboxId: string, containerId: string, execId: string, rows: number, cols: number) {
    const sandbox = this.processOwner(sandboxId, containerId, execId);
    this.requireAgent(sandbox, 'exec.resize');
    await this.call(this.agent.ttyWinResize(sandboxId, containerId, execId, rows, cols), 'ttyWinResize');
  }

  getExec(sandboxId: string, containerId: string, execId: string): ExecView {
    return this.execView(this.exec(sandboxId, containerId, execId));
  }

  /** execId '' names the container's init; either way the sandbox is returned. */
  private processOwner(sandboxId: string, containerId: string, execId: string): SandboxActor {
    if (execId === '') return this.container(sandboxId, containerId).sandbox;
    return this.exec(sandboxId, containerId, execId).container.sandbox;
  }

  output(
    sandboxId: string,
    containerId: string,
    execId: string,
    stream: 'stdout' | 'stderr',
  ): Observable<Uint8Array> {
    this.processOwner(sandboxId, containerId, execId);
    return stream === 'stdout'
      ? this.agent.readStdout(sandboxId, containerId, execId)
      : this.agent.readStderr(sandboxId, containerId, execId);
  }

  async writeStdin(
    sandboxId: string,
    containerId: string,
    execId: string,
    data: Uint8Array,
  ): Promise<number> {
    this.requireAgent(this.processOwner(sandboxId, containerId, execId), 'stdin');
    return this.call(this.agent.writeStdin(sandboxId, containerId, execId, data), 'writeStdin');
  }

  async closeStdin(sandboxId: string, containerId: string, execId: string): Promise<void> {
    this.requireAgent(this.processOwner(sandboxId, containerId, execId), 'stdin close');
    await this.call(this.agent.closeStdin(sandboxId, containerId, execId), 'closeStdin');
  }

  // ---- Runtime: guest calls ----------------------------------------------------------------------

  private guest(sandboxId: string, command: string): void {
    this.requireAgent(this.sandbox(sandboxId), command);
  }

  async guestDetails(sandboxId: string): Promise<GuestDetails> {
    this.guest(sandboxId, 'guestDetails');
    return this.call(this.agent.getGuestDetails(sandboxId), 'getGuestDetails');
  }

  async listInterfaces(sandboxId: string): Promise<NetInterface[]> {
    this.guest(sandboxId, 'listInterfaces');
    return this.call(this.agent.listInterfaces(sandboxId), 'listInterfaces');
  }

  async listRoutes(sandboxId: string): Promise<NetRoute[]> {
    this.guest(sandboxId, 'listRoutes');
    return this.call(this.agent.listRoutes(sandboxId), 'listRoutes');
  }

  async updateInterface(sandboxId: string, iface: NetInterface): Promise<NetInterface> {
    const s = this.guestNetworkChange(sandboxId, 'guest.updateInterface');
    const updated = await this.call(this.agent.updateInterface(sandboxId, iface), 'updateInterface');
    await this.record(s, { type: 'GuestNetworkUpdated', data: { interface: iface } }, { command: 'update' });
    return updated;
  }

  async updateRoutes(sandboxId: string, routes: readonly NetRoute[]): Promise<NetRoute[]> {
    const s = this.guestNetworkChange(sandboxId, 'guest.updateRoutes');
    const table = await this.call(this.agent.updateRoutes(sandboxId, routes), 'updateRoutes');
    await this.record(s, { type: 'GuestNetworkUpdated', data: { routes } }, { command: 'update' });
    return table;
  }

  /** The sandbox, if its guest may have its network changed now (running, agent answering). */
  private guestNetworkChange(sandboxId: string, command: string): SandboxActor {
    const s = this.sandbox(sandboxId);
    this.requireAgent(s, command);
    if (!can('sandbox', s.snapshot, { type: 'GuestNetworkUpdated', data: {} } as never)) {
      throw new InvalidState('sandbox', sandboxId, s.state, command);
    }
    return s;
  }

  async setGuestTime(sandboxId: string, time: Date = new Date()): Promise<Date> {
    this.guest(sandboxId, 'setGuestTime');
    await this.call(this.agent.setGuestDateTime(sandboxId, time), 'setGuestDateTime');
    return time;
  }

  async reseedGuestRandom(sandboxId: string, seed: Uint8Array = randomBytes(64)): Promise<number> {
    this.guest(sandboxId, 'reseedRandom');
    await this.call(this.agent.reseedRandomDev(sandboxId, seed), 'reseedRandomDev');
    return seed.length;
  }

  async copyFile(sandboxId: string, path: string, data: Uint8Array, mode?: number): Promise<void> {
    this.guest(sandboxId, 'copyFile');
    await this.call(this.agent.copyFile(sandboxId, path, data, mode), 'copyFile');
  }

  async metrics(sandboxId: string): Promise<string> {
    this.guest(sandboxId, 'metrics');
    return this.call(this.agent.getMetrics(sandboxId), 'getMetrics');
  }

  events(fromSeq?: number): Observable<EventEnvelope> {
    return this.store.subscribe(fromSeq);
  }

  // ---- lifecycle of the runtime itself -----------------------------------------------------------

  *entities(): Iterable<AnyEntity> {
    for (const s of this.sandboxes.values()) {
      yield s;
      for (const c of s.containers.values()) {
        yield c;
        yield* c.execs.values();
      }
    }
  }

  /**
   * An entity leaving the tree (deleted, or under a deleted parent) still has a stream that every
   * load reads: its final snapshot spares folding that stream again. Kept until the next save.
   */
  private retire(entity: AnyEntity): void {
    if (entity.version > entity.savedVersion) this.retired.push(entity);
    if (this.effectsOn && this.retired.length >= 1024) {
      this.saveSnapshots().catch((err) => this.logger.warn({ err }, 'saving snapshots failed'));
    }
  }

  async saveSnapshots(): Promise<number> {
    let saved = 0;
    const retired = this.retired.splice(0);
    for (const e of [...this.entities(), ...retired]) {
      if (e.version === 0 || e.version <= e.savedVersion) continue;
      const version = e.version;
      await this.store.saveSnapshot({
        stream: e.stream,
        version,
        state: persistSnapshot(e.kind, e.snapshot as never),
      });
      e.savedVersion = version;
      saved += 1;
    }
    return saved;
  }

  async idle(): Promise<void> {
    for (;;) {
      const entities = [...this.entities()];
      await Promise.allSettled([...this.pendingEffects, ...entities.map((e) => e.drained())]);
      // Outcomes and happenings may queue more work from a later tick: settle only when a tick adds none.
      await new Promise((resolve) => setImmediate(resolve));
      if (this.pendingEffects.size === 0 && entities.every((e) => e.effectsInFlight === 0)) return;
    }
  }

  async shutdown(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.stuckTimer);
    const queues = [...this.entities()].map((e) => e.drained());
    await withDeadline(
      Promise.allSettled([...queues, ...this.pendingEffects]),
      this.timeouts.shutdown,
      'shutdown',
    ).catch((err) => this.logger.warn({ err }, 'shutdown: effects still in flight, leaving them'));
    for (const s of this.sandboxes.values()) {
      s.ports?.stop();
      s.ports = undefined;
      if (this.effectsOn) await this.agent.disconnect(s.id).catch(() => undefined);
    }
    await this.saveSnapshots().catch((err) => this.logger.warn({ err }, 'shutdown: saving snapshots failed'));
  }

  reconcile(): Promise<RecoveryReport> {
    return reconcileAll(this);
  }

  /** Warns once for each intent that went past its deadline without an outcome (counted in the metrics). */
  checkStuck(now = Date.now()): void {
    for (const s of this.transitions.newlyStuck(now)) {
      this.logger.warn(
        {
          stream: s.stream,
          intent: s.intent,
          seq: s.seq,
          step: s.step,
          effect: s.effect,
          waitedMs: s.waitedMs,
          deadlineMs: s.deadlineMs,
        },
        'intent stuck: no outcome past its deadline',
      );
    }
  }
}

export type { Entity, EntityKind };
