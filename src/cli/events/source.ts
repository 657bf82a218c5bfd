// Where `sandboxctl events …` reads from: the daemon (online) or the store opened directly (offline).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { type ApiClient, connectApi, liveDaemonOf, readEventPage } from '../../api/index.js';
import { SandboxdError } from '../../errors/index.js';
import type { EventEnvelope } from '../../events/index.js';
import type { StreamReader, StuckIntent } from '../../explain/index.js';
import { type EventStore, openLevelEventStore, type VerifyReport } from '../../store/index.js';

export interface GlobalOptions {
  readonly socket: string;
  readonly json: boolean;
  readonly stateDir?: string;
}

export interface Query {
  fromSeq?: number;
  stream?: string;
  types?: string[];
  since?: string;
  limit?: number;
}

/** Where events come from: the daemon (online) or the store opened directly (offline). */
export interface EventSource {
  readonly mode: 'online' | 'offline';
  read(query: Query): Promise<{ events: EventEnvelope[]; nextSeq: number; lastSeq: number }>;
  verifyStore(): Promise<VerifyReport>;
  streams(prefix?: string): Promise<{ stream: string; version: number }[]>;
  /** Intents the daemon's watch holds without an outcome past their deadline (online only). */
  stuck(olderThanMs?: number): Promise<StuckIntent[]>;
  /** Calls `onEvent` for every event from `fromSeq` on, live, until the process is interrupted. */
  follow(fromSeq: number, onEvent: (e: EventEnvelope) => void): Promise<void>;
  close(): Promise<void>;
}

export function onlineSource(client: ApiClient): EventSource {
  return {
    mode: 'online',
    read: (query) => client.call('events.read', query),
    async verifyStore() {
      const r = (await client.call('events.verify')) as { store: VerifyReport };
      return r.store;
    },
    streams: (prefix) => client.call('events.streams', prefix === undefined ? {} : { prefix }),
    stuck: (olderThanMs) => client.call('events.stuck', olderThanMs === undefined ? {} : { olderThanMs }),
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

export function offlineSource(store: EventStore): EventSource {
  return {
    mode: 'offline',
    read: (query) => readEventPage(store, query),
    verifyStore: () => store.verify(),
    streams: (prefix) => store.listStreams(prefix),
    stuck: () =>
      Promise.reject(new SandboxdError('Internal', 'INTERNAL', 'stuck: offline sources fold the log')),
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
export async function openSource(g: GlobalOptions): Promise<EventSource> {
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
export async function* readAllPages(source: EventSource, query: Query): AsyncIterable<EventEnvelope> {
  let fromSeq = query.fromSeq ?? 1;
  for (;;) {
    const page = await source.read({ ...query, fromSeq, limit: 5000 });
    for (const e of page.events) yield e;
    if (page.nextSeq <= fromSeq || page.nextSeq > page.lastSeq) break;
    fromSeq = page.nextSeq;
  }
}

export async function streamEvents(source: EventSource, stream: string): Promise<EventEnvelope[]> {
  const events: EventEnvelope[] = [];
  for await (const e of readAllPages(source, { stream })) events.push(e);
  if (events.length === 0)
    throw new SandboxdError('NotFound', 'NOT_FOUND', `stream ${JSON.stringify(stream)} has no events`);
  return events;
}

export async function withSource<T>(g: GlobalOptions, fn: (s: EventSource) => Promise<T>): Promise<T> {
  const source = await openSource(g);
  try {
    return await fn(source);
  } finally {
    await source.close();
  }
}

/** The source as explain reads it: one entity's streams only (events.streams + events.read online). */
export function streamReader(source: EventSource): StreamReader {
  return {
    listStreams: (prefix) => source.streams(prefix),
    readStream: (stream) => readAllPages(source, { stream }),
  };
}
