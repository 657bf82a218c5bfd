// State tags: what the rest of the daemon asks about a state ("is a VM up", "has it ended"), declared on the
// machines' own states, so a new state is classified where it is written and no hand-kept list can miss it.
import type { EntityKind } from '../events/index.js';
import { containerMachine } from './container.js';
import { execMachine } from './exec.js';
import { sandboxMachine } from './sandbox.js';

/**
 * - `vmUp`: a VM exists (it may be paused or on its way up or down) — sandbox.
 * - `down`: the VM is gone or going for good — sandbox.
 * - `frozen`: the guest is paused or on its way in or out of it — sandbox.
 * - `startable`: a start may begin here (the sandbox has no VM and is not going away) — sandbox.
 * - `serving`: up and not frozen, so commands that need it answer (a sandbox's agent, a container to exec
 *   into, an exec to signal) — every kind.
 * - `live`: the process (a container's init, an exec) exists and can be signalled — container, exec.
 * - `ended`: the process no longer runs — container, exec.
 * - `transitional`: an effect is in flight (its entry started one); recovery settles it from the log, and it
 *   is not worth a snapshot — every kind.
 */
export type StateTag =
  | 'vmUp'
  | 'down'
  | 'frozen'
  | 'startable'
  | 'serving'
  | 'live'
  | 'ended'
  | 'transitional';

interface TaggedNode {
  readonly tags: readonly string[];
  readonly states: Readonly<Record<string, TaggedNode>>;
}

const roots: Record<EntityKind, TaggedNode> = {
  sandbox: sandboxMachine.root as unknown as TaggedNode,
  container: containerMachine.root as unknown as TaggedNode,
  exec: execMachine.root as unknown as TaggedNode,
};

const cache = new Map<string, ReadonlySet<string>>();

/** The top-level states of `kind` that carry `tag` (tags sit on top-level states, which views show). */
export function statesTagged(kind: EntityKind, tag: StateTag): ReadonlySet<string> {
  const key = `${kind}:${tag}`;
  let set = cache.get(key);
  if (!set) {
    set = new Set(
      Object.entries(roots[kind].states)
        .filter(([, node]) => node.tags.includes(tag))
        .map(([name]) => name),
    );
    cache.set(key, set);
  }
  return set;
}

/** Whether the top-level state `state` of `kind` carries `tag`. */
export function stateHasTag(kind: EntityKind, state: string, tag: StateTag): boolean {
  return statesTagged(kind, tag).has(state);
}
