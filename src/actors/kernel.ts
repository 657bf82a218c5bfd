// The kernel of the actor runtime: every event goes through `record` (checked by the entity's machine,
// appended, folded, its effects started); cascades, supervision, snapshots and the runtime's own lifecycle.
// Commands (commands/) and recovery (recovery.ts) build on it; it knows neither.

import { join } from 'node:path';
import { type Logger, pino } from 'pino';
import type { Observable } from 'rxjs';
import type { Agent } from '../agent/index.js';
import { Internal, InvalidState, NotFound } from '../errors/index.js';
import type { EventEnvelope, NewEvent } from '../events/index.js';
import { correlation, deadlinesFrom, statePath, TransitionWatch } from '../explain/index.js';
import type { Accel, Hypervisor } from '../hypervisor/index.js';
import { canLogged, persistSnapshot, stateHasTag, stepLogged } from '../machines/index.js';
import type { EventStore } from '../store/index.js';
import { withDeadline } from '../timing/index.js';
import { type Asked, EffectRunner } from './effect-runner.js';
import type { EffectContext, SandboxDirs } from './effects.js';
import { type AnyEntity, ContainerActor, type ExecActor, Lives, SandboxActor } from './entity.js';
import { StateDirGuard } from './host-paths.js';
import { netnsOf } from './netns-network.js';
import { releaseNetnsOfLost } from './netns-recovery.js';
import { defaultTimeouts, type RuntimeOptions, type TimeoutName } from './runtime-options.js';
import { recordOfHappening, startPorts, supervised } from './supervision.js';
import type { Caller } from './types.js';

/** How often the runtime looks for intents past their deadline (a warning and a metric each). */
const stuckCheckMs = 5000;

export class Kernel {
  readonly sandboxes = new Map<string, SandboxActor>();
  readonly logger: Logger;
  readonly timeouts: Readonly<Record<TimeoutName, number>>;
  readonly effectsOn: boolean;
  readonly effects: EffectRunner;
  /** The lives every id has had: a create after a delete takes the next (see lifeKey). */
  readonly lives = new Lives();
  /** Sandboxes found paused at recovery: their containers are reconciled once they run again. */
  readonly containersUnchecked = new Set<string>();
  /** Host paths bound into sandboxes stay clear of the state dir (checked here, so every client gets it). */
  readonly guard: StateDirGuard;
  /** Operations in flight and transition durations, fed by every event applied (events stuck, metrics). */
  readonly transitions: TransitionWatch;
  private closing = false;
  private lastAccel: Accel | undefined;
  private retired: AnyEntity[] = [];
  private readonly stuckTimer: NodeJS.Timeout | undefined;
  /** Who calls now: set by `asking` for the synchronous part of an API handler (commands read it at entry). */
  private caller: Caller | undefined;

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
    const ctx: EffectContext = {
      hypervisor: options.hypervisor,
      agent: options.agent,
      logger: this.logger,
      dirs: (id) => this.dirs(id),
      image,
      guard: this.guard,
      afterResume: (sandbox) => this.afterResume(sandbox),
    };
    this.effects = new EffectRunner({
      ctx,
      logger: this.logger,
      timeouts: this.timeouts,
      traceIntents: options.traceIntents === true,
      record: (entity, event, opts) => this.record(entity, event, opts),
    });
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

  /** Runs once a sandbox found paused at recovery runs again (recovery compares its containers then). */
  protected afterResume(_sandbox: SandboxActor): Promise<void> {
    return Promise.resolve();
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
  async recordInTurn(
    entity: AnyEntity,
    event: Asked,
    opts: { command?: string; causationId?: string },
  ): Promise<EventEnvelope | undefined> {
    if (!canLogged(entity.kind, entity.snapshot, event)) {
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
    if (every <= 0 || entity.version - entity.savedVersion < every || entity.is('transitional')) return;
    const version = entity.version;
    const state = persistSnapshot(entity.kind, entity.snapshot);
    entity.savedVersion = version;
    this.store
      .saveSnapshot({ stream: entity.stream, version, state })
      .catch((err) => this.logger.warn({ err, stream: entity.stream }, 'saving a snapshot failed'));
  }

  /** Folds one stored event into the entity; in live mode also supervises, cascades and starts effects. */
  apply(entity: AnyEntity, envelope: EventEnvelope, live: boolean): void {
    const before = entity.state;
    const from = statePath(entity.value);
    const { snapshot, effects } = stepLogged(entity.kind, entity.snapshot, envelope);
    entity.advance(snapshot);
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
    if (live) for (const name of effects) this.effects.start(entity, name, envelope, false);
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
    const vmUp = sandbox.is('vmUp') && handle !== undefined;
    if (vmUp && !sandbox.ports) this.supervise(sandbox);
    if (!vmUp && sandbox.ports) {
      sandbox.ports.stop();
      sandbox.ports = undefined;
      this.fireAndLog(this.agent.disconnect(sandbox.id));
    }
    if (sandbox.is('down') && !stateHasTag('sandbox', before, 'down')) {
      // Its VM is gone: nothing is left to compare with a guest on a later resume.
      this.containersUnchecked.delete(sandbox.id);
      const reason = `sandbox ${state}`;
      if (state === 'lost' && netnsOf(sandbox.context.config))
        this.fireAndLog(releaseNetnsOfLost(this, sandbox));
      for (const c of sandbox.containers.values()) {
        if (!c.is('ended'))
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
    if (live && container.is('ended') && !stateHasTag('container', before, 'ended')) {
      for (const e of container.execs.values()) this.loseExec(e, `container ${state}`);
    }
  }

  private loseExec(exec: ExecActor, reason: string): void {
    if (!exec.is('ended'))
      this.fireAndLog(
        this.record(exec, { type: 'ProcessLost', data: { reason }, correlationId: supervised.cascade }),
      );
  }

  private fireAndLog(work: Promise<unknown>): void {
    work.catch((err) => this.logger.error({ err }, 'appending an outcome failed'));
  }

  // ---- supervision: the hypervisor and agent child actors ------------------------------------------

  supervise(sandbox: SandboxActor): void {
    if (!this.effectsOn || sandbox.ports) return;
    sandbox.ports = startPorts({
      sandboxId: sandbox.id,
      hypervisor: this.hypervisor,
      agent: this.agent,
      report: (h) => {
        if (this.closing) return;
        const happened = recordOfHappening(sandbox, h);
        if (happened) this.fireAndLog(this.record(happened.entity, happened.event));
        else this.logger.debug({ sandboxId: sandbox.id, happening: h }, 'nothing to record of a happening');
      },
      onError: (source, err) => this.logger.warn({ sandboxId: sandbox.id, source, err }, 'event feed failed'),
    });
  }

  // ---- who asks, and lookups ------------------------------------------------------------------------

  /** Refuses commands while closing or read-only; returns who asks (the correlationId of the command's event). */
  open(command: string): string {
    if (this.closing) throw new InvalidState('runtime', 'sandboxd', 'shutting down', command);
    if (!this.effectsOn) throw new InvalidState('runtime', 'sandboxd', 'read-only (effects off)', command);
    return correlation.api(command, this.caller?.connection);
  }

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
  sandboxEntry(id: string): SandboxActor {
    const s = this.sandboxes.get(id);
    if (!s) throw new NotFound('sandbox', id);
    return s;
  }

  containerEntry(sandboxId: string, id: string): ContainerActor {
    const c = this.sandbox(sandboxId).containers.get(id);
    if (!c) throw new NotFound('container', id, { sandboxId });
    return c;
  }

  execEntry(sandboxId: string, containerId: string, id: string): ExecActor {
    const e = this.containerEntry(sandboxId, containerId).execs.get(id);
    if (!e) throw new NotFound('exec', id, { sandboxId, containerId });
    return e;
  }

  /** An agent or hypervisor call made directly for a command, bounded by the `call` deadline. */
  call<T>(work: Promise<T>, step: string): Promise<T> {
    return withDeadline(work, this.timeouts.call, step);
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
        state: persistSnapshot(e.kind, e.snapshot),
      });
      e.savedVersion = version;
      saved += 1;
    }
    return saved;
  }

  async idle(): Promise<void> {
    for (;;) {
      const entities = [...this.entities()];
      await Promise.allSettled([...this.effects.pending, ...entities.map((e) => e.drained())]);
      // Outcomes and happenings may queue more work from a later tick: settle only when a tick adds none.
      await new Promise((resolve) => setImmediate(resolve));
      if (this.effects.pending.size === 0 && entities.every((e) => e.effectsInFlight === 0)) return;
    }
  }

  async shutdown(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.stuckTimer);
    const queues = [...this.entities()].map((e) => e.drained());
    await withDeadline(
      Promise.allSettled([...queues, ...this.effects.pending]),
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
