// Runs the effects machines name, outside the entity's queue, with a deadline that aborts them; their outcome
// (or their …Failed event) comes back through the kernel's record.
import type { Logger } from 'pino';
import { asSandboxdError, type SandboxdError } from '../errors/index.js';
import type { EventEnvelope, FailureData } from '../events/index.js';
import { correlation } from '../explain/index.js';
import { withDeadline } from '../timing/index.js';
import { containerEffectDefinitions, execEffectDefinitions } from './container-effects.js';
import { type EffectContext, type EffectDefinition, PartialEffect } from './effects.js';
import { type AnyEntity, ContainerActor, SandboxActor } from './entity.js';
import { withIntent } from './intent.js';
import type { TimeoutName } from './runtime-options.js';
import { sandboxEffectDefinitions } from './sandbox-effects.js';

/** An event to record; `correlationId` says who asked (see src/explain correlation: api, recovery, supervision). */
export type Asked = { type: string; data: unknown; correlationId?: string };

type RecordFn = (entity: AnyEntity, event: Asked, opts: { causationId: string }) => Promise<unknown>;

/** The failure data a …Failed event keeps. */
export function failureOf(step: string, err: SandboxdError): FailureData {
  return { step: (err.details.step as string | undefined) ?? step, kind: err.kind, message: err.message };
}

export function idsOf(entity: AnyEntity): Readonly<Record<string, string>> {
  if (entity instanceof SandboxActor) return { sandboxId: entity.id };
  if (entity instanceof ContainerActor) return { sandboxId: entity.sandbox.id, containerId: entity.id };
  return { sandboxId: entity.container.sandbox.id, containerId: entity.container.id, execId: entity.id };
}

function definitionOf(entity: AnyEntity, name: string): EffectDefinition<AnyEntity> | undefined {
  const table: Readonly<Partial<Record<string, EffectDefinition<never>>>> =
    entity.kind === 'sandbox'
      ? sandboxEffectDefinitions
      : entity.kind === 'container'
        ? containerEffectDefinitions
        : execEffectDefinitions;
  return table[name] as EffectDefinition<AnyEntity> | undefined;
}

export interface EffectRunnerOptions {
  readonly ctx: EffectContext;
  readonly logger: Logger;
  readonly timeouts: Readonly<Record<TimeoutName, number>>;
  /** Make each effect's intent visible to the ports it calls (see RuntimeOptions.traceIntents). */
  readonly traceIntents: boolean;
  readonly record: RecordFn;
}

export class EffectRunner {
  /** Every effect in flight (idle and shutdown wait for them). */
  readonly pending = new Set<Promise<void>>();
  /** Effects in flight by entity stream, effect name and cause id (see start). */
  private readonly byCause = new Map<string, Promise<void>>();

  constructor(private readonly options: EffectRunnerOptions) {}

  /**
   * Runs an effect outside the entity's queue; its outcome comes back through `record`. An effect
   * already running for the same cause is joined, not started again: two runs of one intent race on
   * the same host files and guest objects (the cause's id is the idempotency key).
   */
  start(entity: AnyEntity, name: string, cause: EventEnvelope, retry: boolean): Promise<void> {
    const key = `${entity.stream} ${name} ${cause.id}`;
    const running = this.byCause.get(key);
    if (running) {
      this.options.logger.warn(
        { ...idsOf(entity), effect: name, causationId: cause.id, retry },
        'effect already running for this cause: joined',
      );
      return running;
    }
    const run = this.run(entity, name, cause, retry);
    this.pending.add(run);
    this.byCause.set(key, run);
    run.finally(() => {
      this.pending.delete(run);
      this.byCause.delete(key);
    });
    return run;
  }

  /** Resolves once no effect of `entity` is running (their failures are theirs to record). */
  async settled(entity: AnyEntity): Promise<void> {
    const prefix = `${entity.stream} `;
    const running = [...this.byCause].filter(([key]) => key.startsWith(prefix)).map(([, run]) => run);
    await Promise.allSettled(running);
  }

  private async run(entity: AnyEntity, name: string, cause: EventEnvelope, retry: boolean): Promise<void> {
    const { ctx, timeouts, record } = this.options;
    const def = definitionOf(entity, name);
    const log = this.options.logger.child({ ...idsOf(entity), effect: name, causationId: cause.id });
    if (!def) {
      log.error('no implementation bound for effect');
      return;
    }
    const controller = new AbortController();
    const untrack = entity.track(controller);
    // A cause that names its own timeoutMs (a stop's grace, then its powerdown) gets that much longer, twice.
    const asked = (cause.data as { timeoutMs?: unknown } | undefined)?.timeoutMs;
    const timeoutMs =
      (timeouts[name as TimeoutName] ?? timeouts.call) + (typeof asked === 'number' ? 2 * asked : 0);
    const by = retry ? { correlationId: correlation.recovery } : {};
    try {
      log.debug({ retry }, 'effect started');
      const work = () =>
        withDeadline(def.run({ ctx, entity, cause, signal: controller.signal, timeoutMs }), timeoutMs, name, {
          controller,
        });
      const outcome = this.options.traceIntents
        ? await withIntent({ eventId: cause.id, effect: name, retry }, work)
        : await work();
      for (const e of outcome) await record(entity, { ...e, ...by }, { causationId: cause.id });
    } catch (thrown) {
      let err = thrown;
      if (err instanceof PartialEffect) {
        try {
          for (const e of err.done) await record(entity, { ...e, ...by }, { causationId: cause.id });
        } catch (appendErr) {
          log.error({ err: appendErr }, 'appending what the effect did before it failed failed');
        }
        err = err.error;
      }
      const error = asSandboxdError(err, name);
      log.warn({ err: error }, 'effect failed');
      if (!def.failure) return;
      entity.lastError = error;
      try {
        await record(
          entity,
          { type: def.failure, data: { error: failureOf(name, error) }, ...by },
          { causationId: cause.id },
        );
      } catch (appendErr) {
        log.error({ err: appendErr }, 'appending the failure failed');
      }
    } finally {
      untrack();
    }
  }
}
