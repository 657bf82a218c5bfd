// An entity's life as a timeline: each event's transition, who asked, what it answered and when; its operations; why it ended.
import { type EntityKind, type EventEnvelope, entityOfEventType } from '../events/index.js';
import { type AnySnapshot, canLogged, initialSnapshot, stepLogged } from '../machines/index.js';
import { type Operation, OperationTracker, statePath, topOf } from './operations.js';
import { describeOrigin, type Origin, originOf } from './origin.js';
import { whyEnded, worldSaid } from './reasons.js';

/** One event of the timeline. */
export interface TimelineEntry {
  readonly seq: number;
  readonly version: number;
  readonly at: string;
  readonly type: string;
  /** State paths before and after (`starting.launching` → `starting.connecting`). */
  readonly from: string;
  readonly to: string;
  readonly origin: Origin;
  readonly by: string;
  /** The event whose effect this one is the outcome of (causationId), and the ms since it. */
  readonly causeSeq?: number;
  readonly tookMs?: number;
  /** ms since the life's first event. */
  readonly offsetMs: number;
  /** What QEMU, the agent or the guest said. */
  readonly world?: string;
  /** Effects this event started. */
  readonly effects: readonly string[];
  /** The machine refused the event (the log holds something the machines would not allow). */
  readonly refused?: boolean;
}

/** One life (stream) of an entity. */
export interface Life {
  readonly stream: string;
  readonly incarnation: number;
  readonly kind: EntityKind;
  readonly state: string;
  readonly startedAt: string;
  readonly lastAt: string;
  readonly timeline: readonly TimelineEntry[];
  readonly operations: readonly Operation[];
  /** Why it ended, in one line (undefined while it lives). */
  readonly ended?: string;
}

/** The incarnation a stream name carries (`sandbox-web~3` → 3; a plain id is the first life). */
export function incarnationOf(stream: string): number {
  const m = /~(\d+)$/.exec(stream);
  return m ? Number(m[1]) : 1;
}

/** Folds one stream's events (version order) into its life. Throws TypeError for an empty stream. */
export function explainLife(stream: string, events: readonly EventEnvelope[]): Life {
  const first = events[0];
  if (!first) throw new TypeError(`${stream}: no events`);
  const kind = entityOfEventType(first.type);
  if (!kind) throw new TypeError(`${stream}: event type ${first.type} is not in the catalogue`);
  let snapshot: AnySnapshot = initialSnapshot(kind);
  const tracker = new OperationTracker();
  const timeline: TimelineEntry[] = [];
  const byId = new Map<string, EventEnvelope>();
  const t0 = Date.parse(first.at);
  for (const event of events) {
    const from = statePath(snapshot.value);
    const allowed = entityOfEventType(event.type) === kind && canLogged(kind, snapshot, event);
    let effects: readonly string[] = [];
    if (allowed) {
      const stepped = stepLogged(kind, snapshot, event);
      snapshot = stepped.snapshot;
      effects = stepped.effects;
    }
    const to = statePath(snapshot.value);
    const origin = originOf(event);
    const cause = event.causationId ? byId.get(event.causationId) : undefined;
    const world = worldSaid(event);
    timeline.push({
      seq: event.seq,
      version: event.version,
      at: event.at,
      type: event.type,
      from,
      to,
      origin,
      by: describeOrigin(origin),
      ...(cause ? { causeSeq: cause.seq, tookMs: Date.parse(event.at) - Date.parse(cause.at) } : {}),
      offsetMs: Date.parse(event.at) - t0,
      ...(world === undefined ? {} : { world }),
      effects,
      ...(allowed ? {} : { refused: true }),
    });
    byId.set(event.id, event);
    if (allowed) tracker.feed({ event, from, to, effects });
  }
  const state = topOf(statePath(snapshot.value));
  const ended = whyEnded(events, state);
  return {
    stream,
    incarnation: incarnationOf(stream),
    kind,
    state,
    startedAt: first.at,
    lastAt: events[events.length - 1]!.at,
    timeline,
    operations: tracker.operations,
    ...(ended === undefined ? {} : { ended }),
  };
}

/** An entity: every life of it, oldest first. */
export interface Explanation {
  /** As asked: `web`, `web/nginx`, `web/nginx/sh`. */
  readonly ref: string;
  readonly kind: EntityKind;
  readonly lives: readonly Life[];
  /** The latest life's state and why it ended. */
  readonly state: string;
  readonly ended?: string;
}

/** Explains an entity from its streams (each a life, events in version order); lives ordered by first seq. */
export function explainEntity(
  ref: string,
  streams: ReadonlyMap<string, readonly EventEnvelope[]>,
): Explanation {
  const lives = [...streams]
    .filter(([, events]) => events.length > 0)
    .map(([stream, events]) => explainLife(stream, events))
    .sort((a, b) => (a.timeline[0]?.seq ?? 0) - (b.timeline[0]?.seq ?? 0));
  const latest = lives[lives.length - 1];
  if (!latest) throw new TypeError(`${ref}: no events`);
  return {
    ref,
    kind: latest.kind,
    lives,
    state: latest.state,
    ...(latest.ended === undefined ? {} : { ended: latest.ended }),
  };
}
