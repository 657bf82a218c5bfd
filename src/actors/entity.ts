// One actor per sandbox, container and exec: its machine snapshot, its stream version and a serial queue.
import type { AnyActorRef } from 'xstate';
import type { SandboxdError } from '../errors/index.js';
import { type EntityKind, lifeOf, streamOf } from '../events/index.js';
import {
  type AnySnapshot,
  type ContextOf,
  type PersistedEntity,
  restoreSnapshot,
  type SnapshotOf,
  type StateTag,
  stateHasTag,
  stateOf,
} from '../machines/index.js';

interface Waiter {
  readonly until: (state: string) => boolean;
  readonly resolve: () => void;
}

/**
 * The live half of an entity: the snapshot its machine computed from its stream, and a queue that
 * runs one command or outcome at a time (different entities run in parallel).
 */
export class Entity<K extends EntityKind> {
  // Either a machine snapshot, or a persisted one restored on first use: most entities recovered
  // from snapshots are only ever viewed, and restoring costs more than the rest of loading them.
  private snap: SnapshotOf<K> | undefined;
  private stored: PersistedEntity | undefined;
  /** Stream version the snapshot includes (the expected version of the next append). */
  version = 0;
  /** Version of the last snapshot saved to the store's cache. */
  savedVersion = 0;
  /** The last effect failure, rethrown to the command that waits for the outcome. */
  lastError: SandboxdError | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private admitted: Promise<unknown> = Promise.resolve();
  private waiters: Waiter[] | undefined;
  private inflight: Set<AbortController> | undefined;
  private ending: Set<Promise<void>> | undefined;

  constructor(
    readonly kind: K,
    readonly id: string,
    readonly stream: string,
    snapshot: SnapshotOf<K> | PersistedEntity,
  ) {
    if ('status' in snapshot) this.snap = snapshot as SnapshotOf<K>;
    else this.stored = snapshot;
  }

  /** The machine snapshot (restored from the persisted form on first use). */
  get snapshot(): SnapshotOf<K> {
    this.snap ??= restoreSnapshot(this.kind, this.stored!);
    this.stored = undefined;
    return this.snap;
  }

  set snapshot(snapshot: SnapshotOf<K>) {
    this.snap = snapshot;
    this.stored = undefined;
  }

  /** Takes the snapshot a step of this entity's own machine returned (stepLogged, typed for any kind). */
  advance(snapshot: AnySnapshot): void {
    this.snapshot = snapshot as SnapshotOf<K>;
  }

  /** The machine's state value (`'running'`, `{ starting: 'launching' }`), without restoring. */
  get value(): unknown {
    return this.snap ? this.snap.value : this.stored!.value;
  }

  get context(): ContextOf<K> {
    return (this.snap ? this.snap.context : this.stored!.context) as ContextOf<K>;
  }

  get state(): string {
    return stateOf({ value: this.value });
  }

  /** Whether the entity's state carries `tag` (declared on the machine's states: src/machines/tags.ts). */
  is(tag: StateTag): boolean {
    return stateHasTag(this.kind, this.state, tag);
  }

  /** Runs `fn` after everything queued before it on this entity, never two at once. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /**
   * Runs a command's checks and append after every command that arrived before it on this entity had its own
   * (commands apply in arrival order, even while an earlier one awaits host checks or its create). Unlike
   * `exclusive`, outcomes do not queue here, so a command may wait in it for effects of its entity.
   */
  admit<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.admitted.then(fn, fn);
    this.admitted = run.catch(() => undefined);
    return run;
  }

  /** Resolves once the queue is empty at the time of the call. */
  drained(): Promise<unknown> {
    return this.tail;
  }

  /** Resolves when the state satisfies `until` (now or after a later transition). */
  settled(until: (state: string) => boolean): Promise<void> {
    if (until(this.state)) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters ??= [];
      this.waiters.push({ until, resolve });
    });
  }

  /** Called after every transition: wakes the waiters whose condition now holds. */
  notify(): void {
    if (!this.waiters) return;
    const state = this.state;
    const still: Waiter[] = [];
    for (const w of this.waiters) (w.until(state) ? w.resolve : () => still.push(w))();
    this.waiters = still.length ? still : undefined;
  }

  /** Tracks an effect in flight so that a delete can abort it (and wait for it: `quiesced`). */
  track(controller: AbortController): () => void {
    this.inflight ??= new Set();
    this.inflight.add(controller);
    let done: () => void = () => undefined;
    const ended = new Promise<void>((resolve) => {
      done = resolve;
    });
    this.ending ??= new Set();
    this.ending.add(ended);
    return () => {
      this.inflight?.delete(controller);
      this.ending?.delete(ended);
      done();
    };
  }

  /** Resolves once every effect in flight now has ended. */
  async quiesced(): Promise<void> {
    await Promise.all([...(this.ending ?? [])]);
  }

  abortInflight(except?: AbortController): void {
    for (const c of this.inflight ?? []) if (c !== except) c.abort();
  }

  get effectsInFlight(): number {
    return this.inflight?.size ?? 0;
  }
}

export class SandboxActor extends Entity<'sandbox'> {
  readonly containers = new Map<string, ContainerActor>();
  /** The hypervisor and agent child actors while a VM exists (see supervision.ts). */
  ports: AnyActorRef | undefined;

  /** Which life of the id (1 for the first; a delete frees the id for the next). */
  constructor(
    id: string,
    snapshot: SnapshotOf<'sandbox'> | PersistedEntity,
    readonly incarnation = 1,
  ) {
    super('sandbox', id, streamOf.sandbox(id, incarnation), snapshot);
  }
}

export class ContainerActor extends Entity<'container'> {
  readonly execs = new Map<string, ExecActor>();

  constructor(
    readonly sandbox: SandboxActor,
    id: string,
    snapshot: SnapshotOf<'container'> | PersistedEntity,
    readonly incarnation = 1,
  ) {
    super('container', id, streamOf.container(sandbox.id, id, [sandbox.incarnation, incarnation]), snapshot);
  }
}

export class ExecActor extends Entity<'exec'> {
  constructor(
    readonly container: ContainerActor,
    id: string,
    snapshot: SnapshotOf<'exec'> | PersistedEntity,
    readonly incarnation = 1,
  ) {
    const lives = [container.sandbox.incarnation, container.incarnation, incarnation] as const;
    super('exec', id, streamOf.exec(container.sandbox.id, container.id, id, lives), snapshot);
  }
}

export type AnyEntity = SandboxActor | ContainerActor | ExecActor;

/**
 * Where the lives of one id are counted: a reused id gets the next incarnation of its key (its parents' lives are
 * part of the key, so a container id in a new life of its sandbox starts again at 1).
 */
export const lifeKey = {
  sandbox: (sandboxId: string) => `sandbox/${sandboxId}`,
  container: (sandboxId: string, sandboxIncarnation: number, containerId: string) =>
    `container/${lifeOf(sandboxId, sandboxIncarnation)}/${containerId}`,
  exec: (
    sandboxId: string,
    sandboxIncarnation: number,
    containerId: string,
    containerIncarnation: number,
    execId: string,
  ) => `exec/${lifeOf(sandboxId, sandboxIncarnation)}/${lifeOf(containerId, containerIncarnation)}/${execId}`,
} as const;

/** The lives each id has had so far (the highest incarnation per lifeKey), for picking the next one. */
export class Lives {
  private readonly last = new Map<string, number>();

  /** Remembers that `key` has had life `incarnation` (loading, and every create). */
  note(key: string, incarnation = 1): void {
    if (incarnation > (this.last.get(key) ?? 0)) this.last.set(key, incarnation);
  }

  /** The incarnation a new create of `key` gets. */
  next(key: string): number {
    return (this.last.get(key) ?? 0) + 1;
  }
}
