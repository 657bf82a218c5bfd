// API methods: The event log: read, follow, verify, what is stuck.
import { z } from 'zod';
import type { EventEnvelope } from '../../events/index.js';
import type { VerifyReport } from '../../store/index.js';
import { isoTimeSchema } from '../schemas.js';
import { type EventLogReader, type MethodSpec, method, type TransitionProblem } from './spec.js';

const eventFilter = {
  stream: z.string().min(1).max(256).optional(),
  types: z.array(z.string().min(1).max(128)).max(64).optional(),
};

function matches(event: EventEnvelope, stream?: string, types?: readonly string[]): boolean {
  if (stream !== undefined && event.stream !== stream) return false;
  if (types !== undefined && types.length > 0 && !types.includes(event.type)) return false;
  return true;
}

/** Reads a page of events in seq order; `nextSeq` continues after the last one looked at. */
export async function readEventPage(
  log: EventLogReader,
  query: { fromSeq?: number; stream?: string; types?: readonly string[]; since?: string; limit?: number },
): Promise<{ events: EventEnvelope[]; nextSeq: number; lastSeq: number }> {
  const fromSeq = query.fromSeq ?? 1;
  const limit = query.limit ?? 1000;
  const since = query.since === undefined ? undefined : Date.parse(query.since);
  const events: EventEnvelope[] = [];
  let nextSeq = fromSeq;
  const source = query.stream !== undefined ? log.readStream(query.stream) : log.readAll(fromSeq);
  for await (const event of source) {
    if (event.seq < fromSeq) continue;
    nextSeq = event.seq + 1;
    if (since !== undefined && Date.parse(event.at) < since) continue;
    if (!matches(event, query.stream, query.types)) continue;
    events.push(event);
    if (events.length >= limit) break;
  }
  return { events, nextSeq, lastSeq: log.lastSeq() };
}

export const eventsMethods = [
  method({
    name: 'events.read',
    summary:
      'A page of durable events in seq order from fromSeq (default 1), filtered by stream, types and time (since). Continue from nextSeq.',
    params: z
      .strictObject({
        fromSeq: z.number().int().min(1).optional(),
        since: isoTimeSchema.optional(),
        limit: z.number().int().min(1).max(10000).optional(),
        ...eventFilter,
      })
      .optional(),
    result: '{ events: EventEnvelope[], nextSeq, lastSeq }',
    handler: (p, { events }) => readEventPage(events, p ?? {}),
  }),
  method({
    name: 'events.subscribe',
    summary:
      'Every durable event from fromSeq (default: the next one) exactly once, in seq order, as `events.event` notifications { subscription, event }. A subscriber that cannot keep up gets `subscription.dropped` { subscription, kind, reason, lastSeq } and the subscription ends.',
    params: z
      .strictObject({
        fromSeq: z.number().int().min(1).optional(),
        ...eventFilter,
      })
      .optional(),
    result: '{ subscription, fromSeq }',
    handler: (p, { runtime, events, connection }) => {
      const fromSeq = p?.fromSeq ?? events.lastSeq() + 1;
      let lastSeq = fromSeq - 1;
      const subscription = connection.subscribe({
        kind: 'events',
        start: (emit, end) => {
          const sub = runtime.events(fromSeq).subscribe({
            next: (event) => {
              if (!matches(event, p?.stream, p?.types)) {
                lastSeq = event.seq;
                return;
              }
              if (emit('events.event', { event })) lastSeq = event.seq;
            },
            error: (err: unknown) =>
              end('subscription.dropped', {
                kind: 'events',
                reason: err instanceof Error ? err.message : String(err),
                lastSeq,
              }),
            complete: () =>
              end('subscription.dropped', { kind: 'events', reason: 'event feed ended', lastSeq }),
          });
          return () => sub.unsubscribe();
        },
        noticeData: () => ({ lastSeq }),
      });
      return { subscription, fromSeq };
    },
  }),
  method({
    name: 'events.unsubscribe',
    summary: 'Ends a subscription of this connection (events.subscribe or exec.output follow).',
    params: z.strictObject({ subscription: z.string().min(1).max(64) }),
    result: '{ unsubscribed: boolean }',
    handler: (p, { connection }) => ({ unsubscribed: connection.unsubscribe(p.subscription) }),
  }),
  method({
    name: 'events.streams',
    summary: 'Streams of the log with their versions (prefix: e.g. "sandbox-").',
    params: z.strictObject({ prefix: z.string().max(256).optional() }).optional(),
    result: 'StreamInfo[] { stream, version }',
    handler: (p, { events }) => events.listStreams(p?.prefix),
  }),
  method({
    name: 'events.stuck',
    summary:
      'Intents without an outcome past their deadline (the effect timeouts), or waiting longer than olderThanMs in their step: what `sandboxctl events stuck` lists.',
    params: z.strictObject({ olderThanMs: z.number().int().min(0).max(86_400_000).optional() }).optional(),
    result:
      'StuckIntent[] { stream, kind, intent, seq, at, by, step, effect?, since, waitedMs, totalMs, deadlineMs }',
    handler: (p, { runtime }) => runtime.transitions?.stuck(Date.now(), p?.olderThanMs) ?? [],
  }),
  method({
    name: 'events.verify',
    summary:
      'Walks the whole log: store integrity (checksums, gaps, indexes) and every event a transition the machines allow.',
    params: z.strictObject({}).optional(),
    result: '{ ok, store: VerifyReport, transitions: { checked, problems: TransitionProblem[] } }',
    handler: async (_p, { events, checkTransitions }) => {
      const store: VerifyReport = await events.verify();
      let checked = 0;
      let problems: readonly TransitionProblem[] = [];
      if (checkTransitions) {
        const all: EventEnvelope[] = [];
        for await (const event of events.readAll(1)) all.push(event);
        checked = all.length;
        problems = checkTransitions(all);
      }
      return {
        ok: store.ok && problems.length === 0,
        store,
        transitions: { checked, available: checkTransitions !== undefined, problems },
      };
    },
  }),
] as const satisfies readonly MethodSpec[];
