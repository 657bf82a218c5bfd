// `sandboxctl events …`: list, show, replay (time travel), verify, tail, export and stats, online or offline.
import { createWriteStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import pino from 'pino';
import { type ApiClient, connectApi, liveDaemonOf, readEventPage } from '../api/index.js';
import { InvalidArgument, SandboxdError } from '../errors/index.js';
import {
  containerEventTypes,
  type EventEnvelope,
  entityOfEventType,
  execEventTypes,
  sandboxEventTypes,
} from '../events/index.js';
import { can, checkTransitions, fed, initialSnapshot, stateOf, step } from '../machines/index.js';
import { type EventStore, openLevelEventStore, type VerifyReport } from '../store/index.js';
import { EXIT } from './exit-codes.js';
import { printJson, shortTime, table, truncate } from './output.js';

export interface GlobalOptions {
  readonly socket: string;
  readonly json: boolean;
  readonly stateDir?: string;
}

interface Query {
  fromSeq?: number;
  stream?: string;
  types?: string[];
  since?: string;
  limit?: number;
}

/** Where events come from: the daemon (online) or the store opened directly (offline). */
interface EventSource {
  readonly mode: 'online' | 'offline';
  read(query: Query): Promise<{ events: EventEnvelope[]; nextSeq: number; lastSeq: number }>;
  verifyStore(): Promise<VerifyReport>;
  streams(prefix?: string): Promise<{ stream: string; version: number }[]>;
  /** Calls `onEvent` for every event from `fromSeq` on, live, until the process is interrupted. */
  follow(fromSeq: number, onEvent: (e: EventEnvelope) => void): Promise<void>;
  close(): Promise<void>;
}

function onlineSource(client: ApiClient): EventSource {
  return {
    mode: 'online',
    read: (query) => client.call('events.read', query),
    async verifyStore() {
      const r = (await client.call('events.verify')) as { store: VerifyReport };
      return r.store;
    },
    streams: (prefix) => client.call('events.streams', prefix === undefined ? {} : { prefix }),
    follow(fromSeq, onEvent) {
      return new Promise((resolve, reject) => {
        client.onNotification((n) => {
          if (n.method === 'events.event') onEvent(n.params.event as EventEnvelope);
          if (n.method === 'subscription.dropped') {
            reject(
              new SandboxdError(
                'Internal',
                'UNAVAILABLE',
                `subscription dropped: ${String(n.params.reason)}`,
              ),
            );
          }
        });
        client.onClose(() => resolve());
        client.call('events.subscribe', { fromSeq }).catch(reject);
      });
    },
    async close() {
      client.close();
    },
  };
}

function offlineSource(store: EventStore): EventSource {
  return {
    mode: 'offline',
    read: (query) => readEventPage(store, query),
    verifyStore: () => store.verify(),
    streams: (prefix) => store.listStreams(prefix),
    async follow(fromSeq, onEvent) {
      // Nothing appends while no daemon runs: show what is there and wait for an interrupt.
      for await (const e of store.readAll(fromSeq)) onEvent(e);
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    },
    close: () => store.close(),
  };
}

/**
 * Online through the daemon unless --state-dir is given; with --state-dir the store is opened
 * directly, and if a daemon holds it, the command goes through the daemon instead.
 */
async function openSource(g: GlobalOptions): Promise<EventSource> {
  if (g.stateDir) {
    // A daemon serving that dir recorded its socket there: ask it, without opening (or touching) its store.
    const holder = await liveDaemonOf(g.stateDir);
    if (holder) return onlineSource(await connectApi(holder.socket));
    const dir = join(g.stateDir, 'events');
    // Opening a missing dir would create an empty log: refuse instead.
    if (!existsSync(dir)) throw new SandboxdError('NotFound', 'NOT_FOUND', `no event log at ${dir}`, { dir });
    try {
      const store = await openLevelEventStore(dir, { logger: silentLogger() });
      return offlineSource(store);
    } catch (err) {
      if (!(err instanceof SandboxdError && err.kind === 'StateDirInUse')) throw err;
      process.stderr.write(
        `events: ${g.stateDir} is held by a running sandboxd; reading through ${g.socket} (pass --socket if it serves another)\n`,
      );
    }
  }
  return onlineSource(await connectApi(g.socket));
}

/** Store logs would mix with the command's output; the store only logs trouble, which commands report anyway. */
function silentLogger() {
  return pino({ level: 'silent' });
}

/** Reads every page of a query. */
async function* readAllPages(source: EventSource, query: Query): AsyncIterable<EventEnvelope> {
  let fromSeq = query.fromSeq ?? 1;
  for (;;) {
    const page = await source.read({ ...query, fromSeq, limit: 5000 });
    for (const e of page.events) yield e;
    if (page.nextSeq <= fromSeq || page.nextSeq > page.lastSeq) break;
    fromSeq = page.nextSeq;
  }
}

const DURATION = /^(\d+)(ms|s|m|h|d)$/;

/** `--since`: an ISO time or a duration back from now (30s, 5m, 2h, 1d). */
export function parseSince(value: string): string {
  const m = DURATION.exec(value);
  if (m) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
    return new Date(Date.now() - Number(m[1]) * unit).toISOString();
  }
  const t = Date.parse(value);
  if (Number.isNaN(t))
    throw new InvalidArgument('since', `${JSON.stringify(value)} is neither a time nor a duration`);
  return new Date(t).toISOString();
}

/** `--until`: `seq:N` or a bare N (global seq), `version:N` / `vN` (stream version), or an ISO time. */
export function parseUntil(value: string): { seq: number } | { version: number } | { time: number } {
  let m = /^(?:seq:)?(\d+)$/.exec(value);
  if (m) return { seq: Number(m[1]) };
  m = /^(?:version:|v)(\d+)$/.exec(value);
  if (m) return { version: Number(m[1]) };
  const t = Date.parse(value);
  if (!Number.isNaN(t)) return { time: t };
  throw new InvalidArgument(
    'until',
    `${JSON.stringify(value)}: expected SEQ, seq:N, version:N, vN or an ISO time`,
  );
}

function summarise(data: unknown): string {
  if (data === undefined || data === null) return '';
  const s = JSON.stringify(data);
  return s === '{}' ? '' : truncate(s, 60);
}

interface Fold {
  state: string;
  context: unknown;
}

/** Folds a stream's events one by one, giving the state after each (effects dropped, refused events marked). */
function foldEach(
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
    snapshot = step(kind, snapshot as never, fed(event) as never).snapshot;
    out.push({ event, after: { state: stateOf(snapshot), context: snapshot.context } });
  }
  return out;
}

function checkTransitionsFrom(
  kind: string,
  snapshot: { value: unknown },
  event: EventEnvelope,
): string | undefined {
  if (entityOfEventType(event.type) !== kind)
    return `a ${entityOfEventType(event.type)} event in a ${kind} stream`;
  if (!can(kind as 'sandbox', snapshot as never, fed(event) as never))
    return `not allowed in state ${stateOf(snapshot)}`;
  return undefined;
}

async function streamEvents(source: EventSource, stream: string): Promise<EventEnvelope[]> {
  const events: EventEnvelope[] = [];
  for await (const e of readAllPages(source, { stream })) events.push(e);
  if (events.length === 0)
    throw new SandboxdError('NotFound', 'NOT_FOUND', `stream ${JSON.stringify(stream)} has no events`);
  return events;
}

function eventRows(events: readonly EventEnvelope[]): unknown[][] {
  return events.map((e) => [e.seq, shortTime(e.at), e.stream, e.version, e.type, summarise(e.data)]);
}

async function withSource<T>(g: GlobalOptions, fn: (s: EventSource) => Promise<T>): Promise<T> {
  const source = await openSource(g);
  try {
    return await fn(source);
  } finally {
    await source.close();
  }
}

/** Registers `events …` under `program`; `globals()` gives the global options at action time. */
export function registerEventCommands(program: Command, globals: () => GlobalOptions): void {
  const events = program
    .command('events')
    .description(
      'the event log: ls, show, replay, verify, tail, export, stats (online, or offline with --state-dir)',
    );

  // A misspelt type would match nothing and look like an empty log: refuse it, naming the known ones.
  const collectType = (v: string, prev: string[] = []) => {
    if (entityOfEventType(v) === undefined) {
      const known = [...sandboxEventTypes, ...containerEventTypes, ...execEventTypes].join(', ');
      throw new InvalidArgumentError(`unknown event type; known types: ${known}`);
    }
    return [...prev, v];
  };

  events
    .command('ls')
    .description('list events (filters: --stream, --type, --from-seq, --since)')
    .option('--stream <stream>', 'only this stream (e.g. sandbox-web1)')
    .option('--type <type>', 'only this event type (repeatable)', collectType)
    .option('--from-seq <n>', 'from this global seq on', (v) => Number(v))
    .option('--since <time>', 'at or after this ISO time, or a duration back (5m, 2h)')
    .option('--limit <n>', 'at most this many events', (v) => Number(v))
    .action(
      async (o: { stream?: string; type?: string[]; fromSeq?: number; since?: string; limit?: number }) => {
        const g = globals();
        await withSource(g, async (source) => {
          const query: Query = {
            ...(o.stream ? { stream: o.stream } : {}),
            ...(o.type ? { types: o.type } : {}),
            ...(o.fromSeq ? { fromSeq: o.fromSeq } : {}),
            ...(o.since ? { since: parseSince(o.since) } : {}),
          };
          const out: EventEnvelope[] = [];
          for await (const e of readAllPages(source, query)) {
            out.push(e);
            if (o.limit !== undefined && out.length >= o.limit) break;
          }
          if (g.json) printJson(out);
          else {
            process.stdout.write(`${table(['SEQ', 'AT', 'STREAM', 'V', 'TYPE', 'DATA'], eventRows(out))}\n`);
            process.stdout.write(`${out.length} event(s) (${source.mode})\n`);
          }
        });
      },
    );

  events
    .command('streams')
    .description('streams with their versions')
    .option('--prefix <prefix>', 'only streams starting with this (sandbox-, container-, exec-)')
    .action(async (o: { prefix?: string }) => {
      const g = globals();
      await withSource(g, async (source) => {
        const streams = await source.streams(o.prefix);
        if (g.json) printJson(streams);
        else
          process.stdout.write(
            `${table(
              ['STREAM', 'VERSION'],
              streams.map((s) => [s.stream, s.version]),
            )}\n`,
          );
      });
    });

  events
    .command('show <stream>')
    .description('each event of a stream with the state after it')
    .action(async (stream: string) => {
      const g = globals();
      await withSource(g, async (source) => {
        const steps = foldEach(await streamEvents(source, stream));
        if (g.json) {
          printJson(
            steps.map((s) => ({
              event: s.event,
              state: s.after.state,
              context: s.after.context,
              refused: s.refused,
            })),
          );
          return;
        }
        const rows = steps.map((s) => [
          s.event.seq,
          s.event.version,
          shortTime(s.event.at),
          s.event.type,
          s.refused ? `${s.after.state} (REFUSED: ${s.refused})` : s.after.state,
          summarise(s.event.data),
        ]);
        process.stdout.write(`${table(['SEQ', 'V', 'AT', 'TYPE', 'STATE AFTER', 'DATA'], rows)}\n`);
      });
    });

  events
    .command('replay <stream>')
    .description("the entity's full state at a point in its history (time travel)")
    .option('--until <point>', 'SEQ | seq:N | version:N | vN | ISO time (default: the end)')
    .action(async (stream: string, o: { until?: string }) => {
      const g = globals();
      const until = o.until ? parseUntil(o.until) : undefined;
      await withSource(g, async (source) => {
        const all = await streamEvents(source, stream);
        const upto = all.filter((e) => {
          if (!until) return true;
          if ('seq' in until) return e.seq <= until.seq;
          if ('version' in until) return e.version <= until.version;
          return Date.parse(e.at) <= until.time;
        });
        if (upto.length === 0) {
          throw new SandboxdError('NotFound', 'NOT_FOUND', `stream ${stream} has no events up to ${o.until}`);
        }
        const steps = foldEach(upto);
        const last = steps[steps.length - 1]!;
        const refused = steps.filter((s) => s.refused);
        const result = {
          stream,
          until: o.until ?? 'end',
          version: last.event.version,
          seq: last.event.seq,
          at: last.event.at,
          lastEvent: last.event.type,
          events: upto.length,
          ofEvents: all.length,
          state: last.after.state,
          context: last.after.context,
          refused: refused.map((s) => ({ seq: s.event.seq, type: s.event.type, reason: s.refused })),
        };
        if (g.json) {
          printJson(result);
          return;
        }
        for (const s of steps) {
          process.stdout.write(
            `replay: v${s.event.version} seq ${s.event.seq} ${s.event.type} → ${s.after.state}${s.refused ? ` (REFUSED: ${s.refused})` : ''}\n`,
          );
        }
        process.stdout.write(
          `\n${stream} at version ${result.version} (seq ${result.seq}, ${shortTime(result.at)}), ${result.events} of ${result.ofEvents} events:\n`,
        );
        process.stdout.write(
          `state: ${result.state}\ncontext:\n${JSON.stringify(result.context, null, 2)}\n`,
        );
        if (refused.length > 0) process.stdout.write(`${refused.length} event(s) refused by the machine\n`);
      });
    });

  events
    .command('verify')
    .description('store integrity (checksums, gaps, indexes) and every transition allowed by the machines')
    .action(async () => {
      const g = globals();
      const progress = (line: string) => {
        if (!g.json) process.stderr.write(`verify: ${line}\n`);
      };
      await withSource(g, async (source) => {
        progress(`checking the store (${source.mode})…`);
        const store = await source.verifyStore();
        progress(
          `store: ${store.events} events, ${store.streams} streams, last seq ${store.lastSeq}, ${store.problems.length} problem(s)`,
        );
        const all: EventEnvelope[] = [];
        let next = 1000;
        for await (const e of readAllPages(source, {})) {
          all.push(e);
          if (all.length >= next) {
            progress(`read ${all.length} events…`);
            next += 1000 * Math.max(1, Math.floor(all.length / 10000));
          }
        }
        progress(`checking ${all.length} events against the machines…`);
        const transitions = checkTransitions(all);
        progress(`transitions: ${all.length} checked, ${transitions.length} refused`);
        const ok = store.ok && transitions.length === 0;
        if (g.json) {
          printJson({
            ok,
            mode: source.mode,
            store,
            transitions: { checked: all.length, problems: transitions },
          });
        } else {
          process.stdout.write(`\n== verify summary (${source.mode}) ==\n`);
          process.stdout.write(
            `events: ${store.events}, streams: ${store.streams}, last seq: ${store.lastSeq}\n`,
          );
          process.stdout.write(`store problems: ${store.problems.length}\n`);
          for (const p of store.problems.slice(0, 50)) {
            process.stdout.write(
              `  ${p.kind} seq=${p.seq ?? '-'} stream=${p.stream ?? '-'} v=${p.version ?? '-'}: ${p.message}\n`,
            );
          }
          process.stdout.write(`transition problems: ${transitions.length}\n`);
          for (const p of transitions.slice(0, 50)) {
            process.stdout.write(
              `  seq=${p.seq} ${p.stream} v${p.version} ${p.type} in state ${p.state}: ${p.message}\n`,
            );
          }
          process.stdout.write(ok ? 'OK\n' : 'FAILED\n');
        }
        if (!ok) process.exitCode = EXIT.CORRUPTION;
      });
    });

  events
    .command('tail')
    .description('the last events; -f follows new ones as they become durable')
    .option('-n, --lines <n>', 'how many of the last events', (v) => Number(v), 10)
    .option('-f, --follow', 'keep following (Ctrl-C to stop)')
    .option('--stream <stream>', 'only this stream')
    .action(async (o: { lines: number; follow?: boolean; stream?: string }) => {
      const g = globals();
      const source = await openSource(g);
      try {
        const head = await source.read({ limit: 1, fromSeq: 1 });
        const lastSeq = head.lastSeq;
        const from = Math.max(1, lastSeq - (o.stream ? lastSeq : o.lines) + 1);
        const recent: EventEnvelope[] = [];
        for await (const e of readAllPages(source, {
          fromSeq: from,
          ...(o.stream ? { stream: o.stream } : {}),
        })) {
          recent.push(e);
        }
        const print = (e: EventEnvelope) => {
          if (o.stream && e.stream !== o.stream) return;
          if (g.json) process.stdout.write(`${JSON.stringify(e)}\n`);
          else
            process.stdout.write(
              `${e.seq}\t${shortTime(e.at)}\t${e.stream}\tv${e.version}\t${e.type}\t${summarise(e.data)}\n`,
            );
        };
        for (const e of recent.slice(-o.lines)) print(e);
        if (o.follow) {
          const stop = () => void source.close();
          process.once('SIGINT', stop);
          await source.follow(lastSeq + 1, print);
          process.off('SIGINT', stop);
        }
      } finally {
        await source.close().catch(() => undefined);
      }
    });

  events
    .command('export')
    .description('every event as JSON Lines (stdout, or --output FILE)')
    .option('--output <file>', 'write here instead of stdout')
    .option('--stream <stream>', 'only this stream')
    .option('--from-seq <n>', 'from this seq on', (v) => Number(v))
    .action(async (o: { output?: string; stream?: string; fromSeq?: number }) => {
      const g = globals();
      await withSource(g, async (source) => {
        const out: NodeJS.WritableStream = o.output ? createWriteStream(o.output) : process.stdout;
        let n = 0;
        for await (const e of readAllPages(source, {
          ...(o.stream ? { stream: o.stream } : {}),
          ...(o.fromSeq ? { fromSeq: o.fromSeq } : {}),
        })) {
          if (!out.write(`${JSON.stringify(e)}\n`))
            await new Promise<void>((r) => out.once('drain', () => r()));
          n++;
        }
        if (o.output) {
          await new Promise<void>((resolve) => out.end(() => resolve()));
          process.stderr.write(`export: ${n} events → ${o.output}\n`);
        }
      });
    });

  events
    .command('stats')
    .description('counts by type and stream, sizes, time span')
    .action(async () => {
      const g = globals();
      await withSource(g, async (source) => {
        const byType = new Map<string, { count: number; bytes: number }>();
        const byStream = new Map<string, number>();
        const byKind = new Map<string, number>();
        let total = 0;
        let bytes = 0;
        let first: string | undefined;
        let last: string | undefined;
        for await (const e of readAllPages(source, {})) {
          const size = Buffer.byteLength(JSON.stringify(e));
          total++;
          bytes += size;
          first ??= e.at;
          last = e.at;
          const t = byType.get(e.type) ?? { count: 0, bytes: 0 };
          t.count++;
          t.bytes += size;
          byType.set(e.type, t);
          byStream.set(e.stream, (byStream.get(e.stream) ?? 0) + 1);
          const kind = e.stream.split('-')[0] ?? e.stream;
          byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
        }
        const stats = {
          mode: source.mode,
          events: total,
          bytes,
          streams: byStream.size,
          first,
          last,
          byType: Object.fromEntries([...byType].sort((a, b) => b[1].count - a[1].count)),
          byStreamKind: Object.fromEntries(byKind),
          topStreams: Object.fromEntries([...byStream].sort((a, b) => b[1] - a[1]).slice(0, 10)),
        };
        if (g.json) {
          printJson(stats);
          return;
        }
        process.stdout.write(
          `${total} events, ${byStream.size} streams, ${bytes} bytes as JSON (${source.mode}); ${shortTime(first)} … ${shortTime(last)}\n`,
        );
        process.stdout.write(
          `${table(
            ['TYPE', 'COUNT', 'BYTES', 'AVG'],
            [...byType]
              .sort((a, b) => b[1].count - a[1].count)
              .map(([t, s]) => [t, s.count, s.bytes, Math.round(s.bytes / s.count)]),
          )}\n`,
        );
        process.stdout.write(`${table(['STREAM KIND', 'EVENTS'], [...byKind])}\n`);
        process.stdout.write(`${table(['TOP STREAM', 'EVENTS'], Object.entries(stats.topStreams))}\n`);
      });
    });
}
