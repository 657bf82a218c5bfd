// The live side of explain: open operations of every entity, their deadlines, what is stuck, and transition durations.
import { type EntityKind, type EventEnvelope, entityOfEventType } from '../events/index.js';
import { type AnySnapshot, canLogged, initialSnapshot, stepLogged } from '../machines/index.js';
import { Histograms } from './histogram.js';
import {
  type Operation,
  OperationTracker,
  statePath,
  type TrackedEvent,
  topOf,
  transitionalStates,
} from './operations.js';

/** An intent without an outcome, past its deadline (or older than asked). */
export interface StuckIntent {
  readonly stream: string;
  readonly kind: EntityKind;
  readonly intent: string;
  readonly seq: number;
  readonly at: string;
  readonly by: string;
  /** The state it waits in (`starting.connecting`), the effect in flight, and since when. */
  readonly step: string;
  readonly effect?: string;
  readonly since: string;
  /** ms in the current step, and since the intent. */
  readonly waitedMs: number;
  readonly totalMs: number;
  /** The effect's deadline the runtime applies, in ms. */
  readonly deadlineMs: number;
}

export interface WatchOptions {
  /** The runtime's deadline of an effect (ms), given the intent's data (a stop's timeoutMs adds to it). */
  readonly deadline: (effect: string | undefined, intentData: unknown) => number;
}

/** Deadlines from a table of effect timeouts (the runtime's `timeouts`): effect + 2 × a `timeoutMs` the intent asked. */
export function deadlinesFrom(timeouts: Readonly<Record<string, number>>): WatchOptions['deadline'] {
  return (effect, data) => {
    const asked = (data as { timeoutMs?: unknown } | null | undefined)?.timeoutMs;
    const base = (effect ? timeouts[effect] : undefined) ?? timeouts.call ?? 30_000;
    return base + (typeof asked === 'number' ? 2 * asked : 0);
  };
}

interface Tracked {
  readonly kind: EntityKind;
  readonly tracker: OperationTracker;
  intentData: unknown;
  /** Already reported stuck (warn once per step). */
  reportedSince?: string;
}

/**
 * Follows the entities' events as they are appended (feed) and keeps only what is in flight: the open
 * operation of each entity. Closed operations go to `durations`; `stuck(now)` lists the overdue ones.
 */
export class TransitionWatch {
  readonly durations = new Histograms();
  private readonly open = new Map<string, Tracked>();
  /** Intents that went stuck since the watch started (each counted once). */
  stuckTotal = 0;

  constructor(private readonly options: WatchOptions) {}

  /**
   * One event of `stream` with the state paths around it; returns the operation it ended, if any.
   * `observe` false (replay at startup): track what is open, but count no duration (it was counted then).
   */
  feed(stream: string, kind: EntityKind, t: TrackedEvent, observe = true): Operation | undefined {
    let entry = this.open.get(stream);
    // Most events neither end nor begin an operation: keep them cheap (this runs for every append and replay).
    if (!entry && !transitionalStates.has(topOf(t.to))) return undefined;
    const fresh = !entry;
    entry ??= { kind, tracker: new OperationTracker(false), intentData: undefined };
    const closed = entry.tracker.feed(t);
    if (observe && closed?.to !== undefined && closed.totalMs !== undefined) {
      this.durations.observe({ entity: kind, from: closed.from, to: closed.to }, closed.totalMs / 1000);
    }
    const now = entry.tracker.current;
    if (!now) {
      this.open.delete(stream);
    } else {
      if (now.seq === t.event.seq) {
        entry.intentData = t.event.data;
        entry.reportedSince = undefined;
      }
      if (fresh) this.open.set(stream, entry);
    }
    return closed;
  }

  /** Open operations overdue at `now`: past their step's deadline, or past `olderThanMs` when given. */
  stuck(now: number, olderThanMs?: number): StuckIntent[] {
    const out: StuckIntent[] = [];
    for (const [stream, entry] of this.open) {
      const op = entry.tracker.current;
      const current = op?.current;
      if (!op || !current) continue;
      const deadlineMs = this.options.deadline(current.effect, entry.intentData);
      const waitedMs = Math.max(0, now - Date.parse(current.since));
      if (waitedMs <= (olderThanMs ?? deadlineMs)) continue;
      out.push({
        stream,
        kind: entry.kind,
        intent: op.intent,
        seq: op.seq,
        at: op.at,
        by: op.by,
        step: current.state,
        ...(current.effect ? { effect: current.effect } : {}),
        since: current.since,
        waitedMs,
        totalMs: Math.max(0, now - Date.parse(op.at)),
        deadlineMs,
      });
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** The intents that went stuck since the last call (each step reported once); counts them in stuckTotal. */
  newlyStuck(now: number): StuckIntent[] {
    const fresh = this.stuck(now).filter((s) => this.open.get(s.stream)?.reportedSince !== s.since);
    for (const s of fresh) {
      const entry = this.open.get(s.stream);
      if (entry) entry.reportedSince = s.since;
    }
    this.stuckTotal += fresh.length;
    return fresh;
  }

  /** How many operations are in flight now. */
  get inFlight(): number {
    return this.open.size;
  }
}

/**
 * Folds a whole log (seq order) through the machines, feeding a watch: what `events stuck` does offline,
 * where no daemon kept one. Events of a type outside the catalogue or refused by the machines are skipped.
 */
export async function watchLog(
  events: AsyncIterable<EventEnvelope>,
  options: WatchOptions,
): Promise<TransitionWatch> {
  const watch = new TransitionWatch(options);
  const snapshots = new Map<string, { kind: EntityKind; snapshot: AnySnapshot }>();
  for await (const event of events) {
    const kind = entityOfEventType(event.type);
    if (!kind) continue;
    let s = snapshots.get(event.stream);
    if (!s) {
      s = { kind, snapshot: initialSnapshot(kind) };
      snapshots.set(event.stream, s);
    }
    if (s.kind !== kind) continue;
    if (!canLogged(kind, s.snapshot, event)) continue;
    const from = statePath(s.snapshot.value);
    const stepped = stepLogged(kind, s.snapshot, event);
    s.snapshot = stepped.snapshot;
    watch.feed(event.stream, kind, {
      event,
      from,
      to: statePath(s.snapshot.value),
      effects: stepped.effects,
    });
  }
  return watch;
}
