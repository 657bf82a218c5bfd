// What every command shares: its arrival turn, the state checks, and the wait for its outcome.
import { InvalidState, NotFound, SandboxdError } from '../../errors/index.js';
import type { Asked } from '../effect-runner.js';
import { type AnyEntity, ContainerActor, SandboxActor } from '../entity.js';
import type { Kernel } from '../kernel.js';

function notFoundOf(entity: AnyEntity): NotFound {
  if (entity instanceof SandboxActor) return new NotFound('sandbox', entity.id);
  if (entity instanceof ContainerActor)
    return new NotFound('container', entity.id, { sandboxId: entity.sandbox.id });
  const c = entity.container;
  return new NotFound('exec', entity.id, { sandboxId: c.sandbox.id, containerId: c.id });
}

/** The incarnation as event data: only from the second life on, so first lives read as they always did. */
export function lifeData(incarnation: number): { incarnation?: number } {
  return incarnation > 1 ? { incarnation } : {};
}

/**
 * Runs a command's checks and append in its arrival turn on `entity` (Entity.admit): after every earlier
 * command on it, a pending create included. An entity whose create was refused or failed is NotFound.
 */
export function inTurn<T>(entity: AnyEntity, fn: () => Promise<T>): Promise<T> {
  return entity.admit(async () => {
    if (entity.state === 'absent') throw notFoundOf(entity);
    return fn();
  });
}

/** Appends a command's event, then waits until the entity leaves the transitional state it entered. */
export async function commandAndWait(
  k: Kernel,
  entity: AnyEntity,
  command: string,
  event: Asked,
  transitional: readonly string[],
  success: readonly string[],
  checks?: () => Promise<void> | void,
): Promise<void> {
  await inTurn(entity, async () => {
    await checks?.();
    entity.lastError = undefined;
    await k.record(entity, event, { command });
  });
  await settledAs(entity, command, transitional, success);
}

/**
 * A change that leaves the entity in its state (update): the intent appended in the entity's turn, then, still
 * holding it, its effect awaited; throws the effect's failure, or InvalidState when no outcome was taken
 * (`open` still true: the entity moved on meanwhile, so the outcome came too late to be recorded).
 * `intent` runs the checks in the turn and gives the event (none: nothing to change, nothing appended).
 */
export async function changeAndWait(
  k: Kernel,
  entity: AnyEntity,
  command: string,
  intent: () => Asked | undefined,
  open: () => boolean,
): Promise<void> {
  await inTurn(entity, async () => {
    const event = intent();
    if (!event) return;
    entity.lastError = undefined;
    await k.record(entity, event, { command });
    await k.effects.settled(entity);
    if (entity.lastError) throw entity.lastError;
    if (open())
      throw new InvalidState(entity.kind, entity.id, entity.state, `${command} (it ended meanwhile)`);
  });
}

/** Waits until the entity leaves `transitional`; throws its failure unless it reached a `success` state. */
export async function settledAs(
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
