// The shape of every stored event. Changing this shape needs a codec version bump.

/** An event as stored and read back: global `seq` (gap-free from 1), per-stream `version` (from 1). */
export interface EventEnvelope<T extends string = string, D = unknown> {
  readonly seq: number;
  readonly stream: string;
  readonly version: number;
  readonly type: T;
  /** The schema version of `data` as read: always the current one after upcasting. */
  readonly schema: number;
  /** nanoid; also the idempotency key of any effect this event asks for. */
  readonly id: string;
  /** ISO-8601 time of the append. */
  readonly at: string;
  readonly causationId?: string;
  readonly correlationId?: string;
  readonly data: D;
}

/** What a caller hands to `append`: the store fills seq, version, at, schema (current) and id (if absent). */
export interface NewEvent<T extends string = string, D = unknown> {
  readonly type: T;
  readonly data: D;
  readonly id?: string;
  readonly causationId?: string;
  readonly correlationId?: string;
}

/** Stream names: `sandbox-<id>`, `container-<sandboxId>-<id>`, `exec-<sandboxId>-<containerId>-<execId>`. */
/**
 * An id with its life: a reused id (created again after its delete) is a new incarnation with its own stream,
 * `<id>~<n>` from the second life on; the first life keeps the plain id (logs older than reuse read the same).
 * `~` is outside the id alphabet, so a life never collides with another id.
 */
export const lifeOf = (id: string, incarnation = 1): string =>
  incarnation > 1 ? `${id}~${incarnation}` : id;

export const streamOf = {
  sandbox: (sandboxId: string, incarnation = 1) => `sandbox-${lifeOf(sandboxId, incarnation)}`,
  container: (sandboxId: string, containerId: string, lives: readonly [number, number] = [1, 1]) =>
    `container-${lifeOf(sandboxId, lives[0])}-${lifeOf(containerId, lives[1])}`,
  exec: (
    sandboxId: string,
    containerId: string,
    execId: string,
    lives: readonly [number, number, number] = [1, 1, 1],
  ) => `exec-${lifeOf(sandboxId, lives[0])}-${lifeOf(containerId, lives[1])}-${lifeOf(execId, lives[2])}`,
} as const;
