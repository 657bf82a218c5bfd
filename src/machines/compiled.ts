// The machines' transitions read once from their definitions into a table, and stepped without building an
// actor or a machine snapshot: replaying 341,000 events spent three quarters of its time inside xstate's
// transition (≈ 15 µs per event), for machines that use a small part of statecharts.
//
// What the machines use, and all this supports: atomic and compound states with an initial child, top-level
// final states, event transitions (first enabled wins, leaf to root) with named guards, targets by id or by
// sibling name, named or inline `assign` actions and named effects, entry actions. No exit actions, history,
// parallel, eventless or delayed transitions, self-targets: compiling a machine that has one throws, so such a
// change cannot go unnoticed. test/machines.compiled checks every step against xstate's own `transition()`.
import type { AnyStateMachine } from 'xstate';

/** What a step needs of a snapshot, and all it gives: the state value, the context, and whether it is final. */
export interface PlainSnapshot<C = unknown> {
  readonly value: unknown;
  readonly context: C;
  readonly status: string;
}

interface Node {
  readonly key: string;
  readonly path: readonly string[];
  readonly parent?: Node;
  readonly type: string;
  readonly states: Readonly<Record<string, Node>>;
  readonly entry: readonly unknown[];
  readonly exit: readonly unknown[];
  readonly initial?: { readonly target: readonly Node[]; readonly actions: readonly unknown[] };
  readonly transitions: ReadonlyMap<string, readonly TransitionDef[]>;
  readonly always?: readonly unknown[];
  readonly after?: readonly unknown[];
  readonly history?: unknown;
}

interface TransitionDef {
  readonly guard?: unknown;
  readonly actions: readonly unknown[];
  readonly target?: readonly Node[];
  readonly reenter: boolean;
}

type Args = { context: unknown; event: unknown };
type Guard = (args: Args, params?: unknown) => boolean;
type Assignment = ((args: Args) => object) | Record<string, unknown>;
/** A resolved action: an effect's name, or a context update. */
type Act = { effect: string } | { assign: Assignment };

interface Compiled {
  readonly root: Node;
  readonly guards: Readonly<Record<string, Guard>>;
  readonly actions: Readonly<Record<string, unknown>>;
  readonly effects: ReadonlySet<string>;
}

export interface CompiledStep<C> {
  readonly snapshot: PlainSnapshot<C>;
  readonly effects: readonly string[];
}

function isDescendant(node: Node, of: Node): boolean {
  for (let n = node.parent; n; n = n.parent) if (n === of) return true;
  return false;
}

function unsupported(machine: string, node: Node, what: string): never {
  throw new TypeError(
    `machine ${machine}, state ${node.path.join('.') || '(root)'}: ${what} is not supported by the compiled stepper`,
  );
}

function check(machine: string, node: Node): void {
  if (node.exit.length) unsupported(machine, node, 'an exit action');
  if (node.always?.length) unsupported(machine, node, 'an eventless transition');
  if (node.after?.length) unsupported(machine, node, 'a delayed transition');
  if (node.type === 'parallel' || node.type === 'history') unsupported(machine, node, `a ${node.type} state`);
  if (node.type === 'final' && node.parent?.parent) unsupported(machine, node, 'a nested final state');
  if (node.initial?.actions.length) unsupported(machine, node, 'an initial action');
  for (const defs of node.transitions.values())
    for (const t of defs) {
      if ((t.target?.length ?? 0) > 1) unsupported(machine, node, 'a transition with several targets');
      const target = t.target?.[0];
      if (target && (target === node || isDescendant(node, target)))
        unsupported(machine, node, 'a transition to itself or an ancestor');
    }
  for (const child of Object.values(node.states)) check(machine, child);
}

const compiledCache = new WeakMap<AnyStateMachine, Compiled>();

function compile(machine: AnyStateMachine, effects: ReadonlySet<string>): Compiled {
  let c = compiledCache.get(machine);
  if (!c) {
    const root = machine.root as unknown as Node;
    check(machine.id, root);
    const impl = machine.implementations as unknown as {
      guards: Record<string, Guard>;
      actions: Record<string, unknown>;
    };
    c = { root, guards: impl.guards, actions: impl.actions, effects };
    compiledCache.set(machine, c);
  }
  return c;
}

function leafOf(root: Node, value: unknown): Node {
  let node = root;
  let v = value;
  for (;;) {
    if (typeof v === 'string') {
      const next = node.states[v];
      if (!next) throw new TypeError(`no state ${v} under ${node.path.join('.') || '(root)'}`);
      return initialLeaf(next);
    }
    const [key, inner] = Object.entries(v as Record<string, unknown>)[0] ?? [];
    const next = key === undefined ? undefined : node.states[key];
    if (!next) throw new TypeError(`no state ${String(key)} under ${node.path.join('.') || '(root)'}`);
    node = next;
    v = inner;
  }
}

function initialLeaf(node: Node): Node {
  let n = node;
  while (n.initial?.target[0]) n = n.initial.target[0];
  return n;
}

/** The state value xstate gives a leaf: `'running'`, `{ starting: 'launching' }`. */
function stateValueOf(leaf: Node): unknown {
  const path = leaf.path;
  let value: unknown = path[path.length - 1];
  for (let i = path.length - 2; i >= 0; i--) value = { [path[i]!]: value };
  return value;
}

function guardHolds(c: Compiled, guard: unknown, args: Args): boolean {
  if (guard === undefined) return true;
  if (typeof guard === 'string') {
    const g = c.guards[guard];
    if (!g) throw new TypeError(`guard ${guard} has no implementation`);
    return g(args);
  }
  if (typeof guard === 'function') return (guard as Guard)(args);
  const { type, params } = guard as { type: string; params?: unknown };
  const g = c.guards[type];
  if (!g) throw new TypeError(`guard ${type} has no implementation`);
  return g(args, params);
}

function resolve(c: Compiled, action: unknown): Act {
  const name = typeof action === 'string' ? action : (action as { type?: string }).type;
  if (name !== undefined && c.effects.has(name)) return { effect: name };
  const impl = typeof action === 'string' ? c.actions[action] : action;
  const assign = impl as { type?: string; assignment?: Assignment } | undefined;
  if (assign?.type === 'xstate.assign' && assign.assignment !== undefined)
    return { assign: assign.assignment };
  throw new TypeError(`action ${String(name)} is neither an effect nor an assign`);
}

/** The first transition the state takes for `event` (leaf first, then its ancestors), with its source. */
function select(c: Compiled, leaf: Node, args: Args): { t: TransitionDef; source: Node } | undefined {
  const type = (args.event as { type: string }).type;
  for (let n: Node | undefined = leaf; n; n = n.parent) {
    const defs = n.transitions.get(type);
    if (!defs) continue;
    for (const t of defs) if (guardHolds(c, t.guard, args)) return { t, source: n };
  }
  return undefined;
}

/** The states a transition enters, outermost first: below its domain down to the target, then initial children. */
function entered(source: Node, target: Node, reenter: boolean): Node[] {
  let domain: Node | undefined;
  if (!reenter && isDescendant(target, source)) domain = source;
  else for (domain = source.parent; domain && !isDescendant(target, domain); domain = domain.parent);
  const path: Node[] = [];
  for (let n: Node | undefined = target; n && n !== domain; n = n.parent) path.unshift(n);
  for (let n = target; n.initial?.target[0]; ) {
    n = n.initial.target[0];
    path.push(n);
  }
  return path;
}

function run(
  c: Compiled,
  actions: readonly unknown[],
  state: { context: unknown; effects: string[] },
  event: unknown,
): void {
  for (const action of actions) {
    const act = resolve(c, action);
    if ('effect' in act) {
      state.effects.push(act.effect);
      continue;
    }
    const args = { context: state.context, event };
    const a = act.assign;
    let partial: Record<string, unknown>;
    if (typeof a === 'function') partial = a(args) as Record<string, unknown>;
    else {
      partial = {};
      for (const [k, v] of Object.entries(a))
        partial[k] = typeof v === 'function' ? (v as (x: Args) => unknown)(args) : v;
    }
    state.context = { ...(state.context as object), ...partial };
  }
}

/** Whether the machine takes `event` in `snapshot`'s state (as xstate's `snapshot.can`). */
export function compiledCan(
  machine: AnyStateMachine,
  effects: ReadonlySet<string>,
  snapshot: PlainSnapshot,
  event: unknown,
): boolean {
  if (snapshot.status !== 'active') return false;
  const c = compile(machine, effects);
  const chosen = select(c, leafOf(c.root, snapshot.value), { context: snapshot.context, event });
  return chosen !== undefined && (chosen.t.target !== undefined || chosen.t.actions.length > 0);
}

/** The next snapshot and the effects named, in order (transition actions, then entry actions outer to inner). */
export function compiledStep<C>(
  machine: AnyStateMachine,
  effects: ReadonlySet<string>,
  snapshot: PlainSnapshot<C>,
  event: unknown,
): CompiledStep<C> {
  if (snapshot.status !== 'active') return { snapshot, effects: [] };
  const c = compile(machine, effects);
  const leaf = leafOf(c.root, snapshot.value);
  const chosen = select(c, leaf, { context: snapshot.context, event });
  if (!chosen) return { snapshot, effects: [] };
  const { t, source } = chosen;
  const state = { context: snapshot.context as unknown, effects: [] as string[] };
  run(c, t.actions, state, event);
  const target = t.target?.[0];
  if (!target) {
    if (state.context === snapshot.context && state.effects.length === 0) return { snapshot, effects: [] };
    return {
      snapshot: { value: snapshot.value, context: state.context as C, status: 'active' },
      effects: state.effects,
    };
  }
  const path = entered(source, target, t.reenter);
  for (const n of path) run(c, n.entry, state, event);
  const next = path[path.length - 1] ?? target;
  const done = next.type === 'final' && next.parent === c.root;
  return {
    snapshot: { value: stateValueOf(next), context: state.context as C, status: done ? 'done' : 'active' },
    effects: state.effects,
  };
}

/** The snapshot before any event: the initial state's leaf with its entry actions run (effects dropped). */
export function compiledInitial<C>(
  machine: AnyStateMachine,
  effects: ReadonlySet<string>,
  context: C,
): PlainSnapshot<C> {
  const c = compile(machine, effects);
  const first = c.root.initial?.target[0];
  if (!first) throw new TypeError(`machine ${machine.id} has no initial state`);
  const path = [first];
  for (let n = first; n.initial?.target[0]; ) {
    n = n.initial.target[0];
    path.push(n);
  }
  const state = { context: context as unknown, effects: [] as string[] };
  for (const n of path) run(c, n.entry, state, { type: 'xstate.init' });
  return { value: stateValueOf(path[path.length - 1]!), context: state.context as C, status: 'active' };
}

/** A persisted snapshot as a plain one (no entry action runs: it is a state already reached). */
export function compiledRestore<C>(
  machine: AnyStateMachine,
  effects: ReadonlySet<string>,
  value: unknown,
  context: C,
): PlainSnapshot<C> {
  const c = compile(machine, effects);
  const leaf = leafOf(c.root, value);
  return { value, context, status: leaf.type === 'final' && leaf.parent === c.root ? 'done' : 'active' };
}
