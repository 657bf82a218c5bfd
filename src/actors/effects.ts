// What an effect is given and returns, and helpers every effect table shares. The tables: sandbox-effects.ts,
// container-effects.ts (containers and execs); vm-config.ts says what a sandbox config asks of QEMU.

import type { Logger } from 'pino';
import type { Agent } from '../agent/index.js';
import { HypervisorError } from '../errors/index.js';
import type { DomainEventType, EventEnvelope, NewEvent } from '../events/index.js';
import type { GuestImagePaths, Hypervisor } from '../hypervisor/index.js';
import type { SandboxActor } from './entity.js';
import type { StateDirGuard } from './host-paths.js';

export interface SandboxDirs {
  /** `<stateDir>/sandboxes/<id>`: removed whole by delete. */
  readonly root: string;
  /** VmConfig.stateDir: sockets, pidfile, console log. */
  readonly vm: string;
  /** VmConfig.sharedDir: container bundles, seen by the guest under its share. */
  readonly shared: string;
}

export interface EffectContext {
  readonly hypervisor: Hypervisor;
  readonly agent: Agent;
  readonly logger: Logger;
  readonly dirs: (sandboxId: string) => SandboxDirs;
  readonly image: () => Promise<GuestImagePaths>;
  /** Keeps every host path bound into a sandbox clear of the state dir. */
  readonly guard: StateDirGuard;
  /**
   * Runs inside resumeVm, after the agent answers and before the sandbox counts as running, so no
   * command can create or start a container while recovery is still comparing the old ones with the guest.
   */
  readonly afterResume?: (sandbox: SandboxActor) => Promise<void>;
}

export interface EffectCall<A> {
  readonly ctx: EffectContext;
  readonly entity: A;
  /** The event that asked for the effect; its id is the idempotency key. */
  readonly cause: EventEnvelope;
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
}

export interface EffectDefinition<A> {
  /** The event appended when the effect throws or times out (none: failures are only logged). */
  readonly failure?: DomainEventType;
  readonly run: (call: EffectCall<A>) => Promise<NewEvent[]>;
}

/**
 * Thrown by an effect that changed the world part way before it failed: `done` (what was taken, as outcome
 * events) is recorded first, then the definition's failure for `error`. The log tells what the world has.
 */
export class PartialEffect extends Error {
  constructor(
    readonly done: readonly NewEvent[],
    readonly error: unknown,
  ) {
    super(error instanceof Error ? error.message : String(error));
    this.name = 'PartialEffect';
  }
}

export const quietly = async (what: Promise<unknown>, logger: Logger, step: string) => {
  try {
    await what;
  } catch (err) {
    logger.debug({ err, step }, 'best-effort step failed');
  }
};

export function handleOf(sandbox: SandboxActor, step: string) {
  const handle = sandbox.context.handle;
  if (!handle) throw new HypervisorError(step, 'the sandbox has no VM', { sandboxId: sandbox.id });
  return handle;
}

/**
 * Whether the sandbox's agent can be asked anything now (a paused guest is frozen and cannot answer).
 * While resuming, only recovery's check of the containers asks, after the guest runs and the agent answered.
 */
export function agentReachable(sandbox: SandboxActor): boolean {
  return sandbox.state === 'running' || sandbox.state === 'resuming';
}

/** How long a sandbox's delete waits for its containers' effects in flight to end. */
export const childQuiesceMs = 10_000;
