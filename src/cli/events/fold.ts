// Folding a stream event by event for `events show` / `replay`, and table rows of events.
import type { EntityKind, EventEnvelope } from '../../events/index.js';
import { entityOfEventType } from '../../events/index.js';
import { type AnySnapshot, canLogged, initialSnapshot, stateOf, stepLogged } from '../../machines/index.js';
import { shortTime, truncate } from '../output.js';

export function summarise(data: unknown): string {
  if (data === undefined || data === null) return '';
  const s = JSON.stringify(data);
  return s === '{}' ? '' : truncate(s, 60);
}

export interface Fold {
  state: string;
  context: unknown;
}

/** Folds a stream's events one by one, giving the state after each (effects dropped, refused events marked). */
export function foldEach(
  events: readonly EventEnvelope[],
): { event: EventEnvelope; after: Fold; refused?: string }[] {
  const out: { event: EventEnvelope; after: Fold; refused?: string }[] = [];
  const kind = events[0] ? entityOfEventType(events[0].type) : undefined;
  if (!kind) {
    return events.map((event) => ({
      event,
      after: { state: '?', context: undefined },
      refused: 'unknown entity',
    }));
  }
  let snapshot = initialSnapshot(kind);
  for (const event of events) {
    const problems = checkTransitionsFrom(kind, snapshot, event);
    if (problems) {
      out.push({ event, after: { state: stateOf(snapshot), context: snapshot.context }, refused: problems });
      continue;
    }
    snapshot = stepLogged(kind, snapshot, event).snapshot;
    out.push({ event, after: { state: stateOf(snapshot), context: snapshot.context } });
  }
  return out;
}

export function checkTransitionsFrom(
  kind: EntityKind,
  snapshot: AnySnapshot,
  event: EventEnvelope,
): string | undefined {
  if (entityOfEventType(event.type) !== kind)
    return `a ${entityOfEventType(event.type)} event in a ${kind} stream`;
  if (!canLogged(kind, snapshot, event)) return `not allowed in state ${stateOf(snapshot)}`;
  return undefined;
}

export function eventRows(events: readonly EventEnvelope[]): unknown[][] {
  return events.map((e) => [e.seq, shortTime(e.at), e.stream, e.version, e.type, summarise(e.data)]);
}
