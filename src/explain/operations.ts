// Pairing intents with their outcomes: an operation runs from the event that enters a transitional state to the one that leaves it.
import type { EventEnvelope } from '../events/index.js';
import { statesTagged } from '../machines/index.js';
import { describeOrigin, type Origin, originOf } from './origin.js';

/** States an effect is in flight in (their entry starts one); an operation lasts while the entity is in one. */
export const transitionalStates: ReadonlySet<string> = new Set(
  (['sandbox', 'container', 'exec'] as const).flatMap((kind) => [...statesTagged(kind, 'transitional')]),
);

/** Effects that end in no outcome event of their own (best-effort cleanup). */
const noOutcome = new Set(['releaseVm']);

/** What people call each effect's step. */
export const stepNames: Readonly<Record<string, string>> = {
  launchVm: 'launch',
  connectAgent: 'agent connect',
  initGuest: 'guest init',
  pauseVm: 'pause',
  resumeVm: 'resume',
  stopVm: 'stop',
  destroyVm: 'delete',
  resizeVm: 'resize',
  createContainer: 'create',
  startContainer: 'start',
  pauseContainer: 'pause',
  resumeContainer: 'resume',
  removeContainer: 'delete',
  startProcess: 'start',
};

/** The state path of a machine value: `running`, `starting.connecting`. */
export function statePath(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const [key, inner] = Object.entries(value)[0] ?? ['unknown', undefined];
    return inner === undefined ? key : `${key}.${statePath(inner)}`;
  }
  return 'unknown';
}

/** The top-level state of a path (`starting` of `starting.connecting`). */
export const topOf = (path: string): string => path.split('.')[0] ?? path;

export interface OperationStep {
  /** The step's name (`launch`, `agent connect`, `guest init`, `start`, …). */
  readonly name: string;
  readonly effect: string;
  /** The event that ended the step (its outcome) and when. */
  readonly outcome: string;
  readonly seq: number;
  readonly at: string;
  readonly ms: number;
  /** Seq of the event whose effect this outcome answers (paired by causationId), when recorded. */
  readonly causeSeq?: number;
}

/** One intent and everything until the entity left the transitional states it entered. */
export interface Operation {
  readonly intent: string;
  readonly seq: number;
  readonly at: string;
  readonly origin: Origin;
  readonly by: string;
  /** Top-level state before the intent, and after the operation ended (undefined while open). */
  readonly from: string;
  to?: string;
  readonly steps: OperationStep[];
  /** Intent to end, in ms (the steps add up to it). */
  totalMs?: number;
  /**
   * How it ended: `effect` (its outcome came back), `recovery` (a restarted daemon settled it),
   * `superseded` (another intent took the entity elsewhere, e.g. a forced delete), or `open` (not yet).
   */
  settled: 'effect' | 'recovery' | 'superseded' | 'open';
  /** The event that ended it. */
  endedBy?: string;
  /** While open: the step it is in, the effect in flight, since when. */
  current?: { readonly state: string; readonly effect?: string; readonly since: string };
}

/** An event as the tracker sees it: the state path before and after it and the effects it started. */
export interface TrackedEvent {
  readonly event: EventEnvelope;
  readonly from: string;
  readonly to: string;
  readonly effects: readonly string[];
}

const ms = (from: string, to: string): number => Math.max(0, Date.parse(to) - Date.parse(from));

/**
 * Follows one stream's events and cuts them into operations. Feed events in version order; `feed`
 * returns the operation an event ended (if any) so live users can observe durations as they happen.
 */
export class OperationTracker {
  private open: Operation | undefined;
  private last: TrackedEvent | undefined;
  /** Effects started by each event id of the open operation, to name the step an outcome ends. */
  private effectsBy = new Map<string, { seq: number; at: string; effects: readonly string[] }>();
  readonly operations: Operation[] = [];

  /** `keep`: remember every operation in `operations` (a timeline); false keeps only the open one (live watch). */
  constructor(private readonly keep = true) {}

  get current(): Operation | undefined {
    return this.open;
  }

  feed(t: TrackedEvent): Operation | undefined {
    const fromTop = topOf(t.from);
    const toTop = topOf(t.to);
    let closed: Operation | undefined;
    const inFlight = transitionalStates.has(fromTop);
    if (this.open && inFlight) {
      const op = this.open;
      const prev = this.last;
      const cause = t.event.causationId ? this.effectsBy.get(t.event.causationId) : undefined;
      const effect =
        (cause?.effects ?? prev?.effects ?? []).find((e) => !noOutcome.has(e)) ??
        op.current?.effect ??
        'unknown';
      op.steps.push({
        name: stepNames[effect] ?? effect,
        effect,
        outcome: t.event.type,
        seq: t.event.seq,
        at: t.event.at,
        ms: ms(prev?.event.at ?? op.at, t.event.at),
        ...(cause ? { causeSeq: cause.seq } : {}),
      });
      const leaves = !transitionalStates.has(toTop) || toTop !== fromTop;
      if (leaves) {
        op.to = toTop;
        op.totalMs = ms(op.at, t.event.at);
        op.endedBy = t.event.type;
        const origin = originOf(t.event);
        op.settled = transitionalStates.has(toTop)
          ? 'superseded'
          : origin.by === 'recovery'
            ? 'recovery'
            : 'effect';
        op.current = undefined;
        closed = op;
        this.open = undefined;
        this.effectsBy.clear();
      } else {
        op.current = { state: t.to, effect: this.pending(t.effects, op), since: t.event.at };
      }
    }
    if (!this.open && transitionalStates.has(toTop) && (!inFlight || closed?.settled === 'superseded')) {
      const origin = originOf(t.event);
      const op: Operation = {
        intent: t.event.type,
        seq: t.event.seq,
        at: t.event.at,
        origin,
        by: describeOrigin(origin),
        from: fromTop,
        steps: [],
        settled: 'open',
        current: { state: t.to, effect: this.pending(t.effects), since: t.event.at },
      };
      this.open = op;
      if (this.keep) this.operations.push(op);
    }
    if (this.open) this.effectsBy.set(t.event.id, { seq: t.event.seq, at: t.event.at, effects: t.effects });
    this.last = t;
    return closed;
  }

  private pending(effects: readonly string[], op?: Operation): string | undefined {
    return effects.find((e) => !noOutcome.has(e)) ?? op?.current?.effect;
  }
}
