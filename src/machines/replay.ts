// Stepping, checking and folding entity machines without running anything: the one code path for live and replay.
import type { AnyStateMachine, ContextFrom } from 'xstate';
import { type EntityKind, type EventEnvelope, entityOfEventType } from '../events/index.js';
import { topState } from './common.js';
import {
  compiledCan,
  compiledInitial,
  compiledRestore,
  compiledStep,
  type PlainSnapshot,
} from './compiled.js';
import { type ContainerMachineEvent, containerEffects, containerMachine } from './container.js';
import { type ExecMachineEvent, execEffects, execMachine } from './exec.js';
import { type SandboxMachineEvent, sandboxEffects, sandboxMachine } from './sandbox.js';

// Plain snapshots (src/machines/compiled.ts): value, context and status, nothing to call.
export type SandboxSnapshot = PlainSnapshot<ContextFrom<typeof sandboxMachine>>;
export type ContainerSnapshot = PlainSnapshot<ContextFrom<typeof containerMachine>>;
export type ExecSnapshot = PlainSnapshot<ContextFrom<typeof execMachine>>;

export interface EntityTypes {
  sandbox: { snapshot: SandboxSnapshot; event: SandboxMachineEvent; context: SandboxSnapshot['context'] };
  container: {
    snapshot: ContainerSnapshot;
    event: ContainerMachineEvent;
    context: ContainerSnapshot['context'];
  };
  exec: { snapshot: ExecSnapshot; event: ExecMachineEvent; context: ExecSnapshot['context'] };
}
export type SnapshotOf<K extends EntityKind> = EntityTypes[K]['snapshot'];
export type EventOf<K extends EntityKind> = EntityTypes[K]['event'];
export type ContextOf<K extends EntityKind> = EntityTypes[K]['context'];

/** The machine of each entity kind. */
export const machines = { sandbox: sandboxMachine, container: containerMachine, exec: execMachine } as const;

/** Which action names are effects (the rest are context updates resolved inside the step). */
export const effectNames: Readonly<Record<EntityKind, ReadonlySet<string>>> = {
  sandbox: new Set(sandboxEffects),
  container: new Set(containerEffects),
  exec: new Set(execEffects),
};

/** A persisted machine snapshot: plain JSON, restorable with `restoreSnapshot`. */
export interface PersistedEntity {
  readonly value: unknown;
  readonly context: unknown;
}

export interface Stepped<K extends EntityKind> {
  readonly snapshot: SnapshotOf<K>;
  /** Names of the effects the transition asks for, in order. Nothing was run. */
  readonly effects: readonly string[];
}

const machineOf = (kind: EntityKind): AnyStateMachine => machines[kind] as AnyStateMachine;

const initials = new Map<EntityKind, unknown>();

/**
 * The state before the entity's first event (`absent`). Computed once per kind: snapshots are
 * immutable (every step returns a new one).
 */
export function initialSnapshot<K extends EntityKind>(kind: K): SnapshotOf<K> {
  let initial = initials.get(kind) as SnapshotOf<K> | undefined;
  if (!initial) {
    const machine = machineOf(kind);
    initial = compiledInitial(machine, effectNames[kind], machine.config.context) as SnapshotOf<K>;
    initials.set(kind, initial);
  }
  return initial;
}

/** Pure: the next snapshot and the effects it names. An event the state does not accept leaves it as is. */
export function step<K extends EntityKind>(kind: K, snapshot: SnapshotOf<K>, event: EventOf<K>): Stepped<K> {
  return compiledStep(machineOf(kind), effectNames[kind], snapshot as PlainSnapshot, event) as Stepped<K>;
}

/** A snapshot of any kind: what code holding every kind of entity (the kernel, replay, explain) passes around. */
export type AnySnapshot = SnapshotOf<EntityKind>;

/** An event as the log holds it (or as a command asks for it): its type is the machine's to check. */
export interface LoggedEvent {
  readonly type: string;
  readonly data: unknown;
  readonly at?: string;
}

/**
 * `step` for a kind known only at run time: the machine, not the compiler, tells whether the event is one of
 * its own (one it does not take leaves the snapshot as it is, as `step` does).
 */
export function stepLogged(kind: EntityKind, snapshot: AnySnapshot, event: LoggedEvent): Stepped<EntityKind> {
  return compiledStep(
    machineOf(kind),
    effectNames[kind],
    snapshot as PlainSnapshot,
    event,
  ) as Stepped<EntityKind>;
}

/** `can` for a kind known only at run time (see stepLogged). */
export function canLogged(kind: EntityKind, snapshot: AnySnapshot, event: LoggedEvent): boolean {
  return compiledCan(machineOf(kind), effectNames[kind], snapshot as PlainSnapshot, event);
}

/** Whether the machine accepts `event` in this state (what the runtime checks before appending). */
export function can<K extends EntityKind>(kind: K, snapshot: SnapshotOf<K>, event: EventOf<K>): boolean {
  return compiledCan(machineOf(kind), effectNames[kind], snapshot, event);
}

/** The state name views show (`starting` for `{ starting: 'launching' }`). */
export function stateOf(snapshot: { value: unknown }): string {
  return topState(snapshot.value);
}

/** Plain JSON for the snapshot cache (keys holding `undefined` dropped, as a JSON round trip would). */
export function persistSnapshot(_kind: EntityKind, snapshot: AnySnapshot): PersistedEntity {
  return JSON.parse(JSON.stringify({ value: snapshot.value, context: snapshot.context })) as PersistedEntity;
}

/** Rebuilds a snapshot from `persistSnapshot`'s output without running entry actions. */
export function restoreSnapshot<K extends EntityKind>(kind: K, persisted: PersistedEntity): SnapshotOf<K> {
  return compiledRestore(
    machines[kind],
    effectNames[kind],
    persisted.value,
    persisted.context,
  ) as SnapshotOf<K>;
}

/** A stored event as the machines consume it. */
export function fed<K extends EntityKind>(envelope: EventEnvelope): EventOf<K> {
  return { type: envelope.type, data: envelope.data, at: envelope.at } as EventOf<K>;
}

export interface ReplayedEntity<K extends EntityKind = EntityKind> {
  readonly kind: K;
  readonly stream: string;
  readonly state: string;
  readonly context: ContextOf<K>;
  readonly version: number;
  readonly snapshot: SnapshotOf<K>;
}

/**
 * Folds one stream's events (in version order) through its machine, effects dropped. Events the
 * machine refuses are skipped (checkTransitions reports them). Throws for an empty stream or a type
 * outside the catalogue.
 */
export function replayStream(stream: string, events: Iterable<EventEnvelope>): ReplayedEntity {
  let kind: EntityKind | undefined;
  let snapshot: SnapshotOf<EntityKind> | undefined;
  let version = 0;
  for (const envelope of events) {
    const k = entityOfEventType(envelope.type);
    if (!k) throw new TypeError(`${stream}: event type ${envelope.type} is not in the catalogue`);
    if (!kind) {
      kind = k;
      snapshot = initialSnapshot(k);
    }
    if (k === kind) snapshot = stepLogged(kind, snapshot!, envelope).snapshot;
    version = envelope.version;
  }
  if (!kind || !snapshot) throw new TypeError(`${stream}: no events`);
  return { kind, stream, state: stateOf(snapshot), context: snapshot.context, version, snapshot };
}

export interface ReplayStep {
  readonly event: EventEnvelope;
  /** Whether the machine accepted the event (a refused one leaves the state as it was). */
  readonly allowed: boolean;
  /** State and context after the event. */
  readonly state: string;
  readonly context: unknown;
}

/** Folds one stream event by event, yielding the state after each (for `events replay --until`). */
export function* replayEach(events: Iterable<EventEnvelope>): Generator<ReplayStep> {
  let kind: EntityKind | undefined;
  let snapshot: SnapshotOf<EntityKind> | undefined;
  for (const event of events) {
    const k = entityOfEventType(event.type);
    if (!kind && k) {
      kind = k;
      snapshot = initialSnapshot(k);
    }
    if (!kind || !snapshot || k !== kind) {
      yield {
        event,
        allowed: false,
        state: snapshot ? stateOf(snapshot) : 'absent',
        context: snapshot?.context,
      };
      continue;
    }
    const allowed = canLogged(kind, snapshot, event);
    if (allowed) snapshot = stepLogged(kind, snapshot, event).snapshot;
    yield { event, allowed, state: stateOf(snapshot), context: snapshot.context };
  }
}

export interface TransitionProblem {
  readonly seq: number;
  readonly stream: string;
  readonly version: number;
  readonly type: string;
  /** The entity's state when the event came. */
  readonly state: string;
  readonly message: string;
}

/**
 * Walks events (any order of streams, each stream in version order) and names every event its
 * entity's machine would not accept in the state the earlier events left it in.
 */
export function checkTransitions(events: Iterable<EventEnvelope>): TransitionProblem[] {
  const problems: TransitionProblem[] = [];
  const current = new Map<string, { kind: EntityKind; snapshot: SnapshotOf<EntityKind> }>();
  for (const e of events) {
    const k = entityOfEventType(e.type);
    const entry = current.get(e.stream);
    const problem = (state: string, message: string) =>
      problems.push({ seq: e.seq, stream: e.stream, version: e.version, type: e.type, state, message });
    if (!k) {
      problem(entry ? stateOf(entry.snapshot) : 'absent', `unknown event type ${e.type}`);
      continue;
    }
    const kind = entry?.kind ?? k;
    if (kind !== k) {
      problem(stateOf(entry!.snapshot), `a ${k} event in a ${kind} stream`);
      continue;
    }
    const snapshot = entry?.snapshot ?? initialSnapshot(kind);
    if (!canLogged(kind, snapshot, e)) {
      problem(stateOf(snapshot), `${kind} machine does not allow ${e.type} in state ${stateOf(snapshot)}`);
      continue;
    }
    current.set(e.stream, { kind, snapshot: stepLogged(kind, snapshot, e).snapshot });
  }
  return problems;
}
