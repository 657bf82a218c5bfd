// The in-memory EventStore: same contract as the LevelDB one, for unit tests and control-plane benchmarks.
import { type Observable, Subject } from 'rxjs';
import { ConcurrencyConflict, InvalidArgument, InvalidState } from '../errors/index.js';
import type { EventEnvelope, EventRegistry, NewEvent } from '../events/index.js';
import { defaultRegistry } from './defaults.js';
import { catchUpThenLive } from './live.js';
import { checkExpectedVersion, checkStream, prepareEvents, toEnvelope } from './prepare.js';
import type {
  AppendResult,
  EventStore,
  ExpectedVersion,
  StoredSnapshot,
  StreamInfo,
  VerifyProblem,
  VerifyReport,
} from './types.js';

export interface MemoryEventStoreOptions {
  /** Validates appends; default: the catalogue's `eventRegistry`. */
  readonly registry?: EventRegistry;
}

/** An EventStore held in memory. "Durable" means committed to the arrays; appends resolve on a microtask. */
export function createMemoryEventStore(options: MemoryEventStoreOptions = {}): EventStore {
  const registry = options.registry ?? defaultRegistry();
  const log: EventEnvelope[] = [];
  const streams = new Map<string, EventEnvelope[]>();
  const snapshots = new Map<string, string>();
  const live = new Subject<EventEnvelope>();
  let closed = false;

  const open = (command: string): void => {
    if (closed) throw new InvalidState('event store', 'memory', 'closed', command);
  };

  const versionOf = (stream: string): number => streams.get(stream)?.length ?? 0;

  async function* readFrom(events: readonly EventEnvelope[], from: number): AsyncIterable<EventEnvelope> {
    // Index-based so events appended while iterating are read too.
    for (let i = from; i < events.length; i++) yield events[i]!;
  }

  const store: EventStore = {
    async append(
      stream: string,
      expectedVersion: ExpectedVersion,
      events: readonly NewEvent[],
    ): Promise<AppendResult> {
      open('append');
      checkStream(stream);
      checkExpectedVersion(expectedVersion);
      const prepared = prepareEvents(registry, events);
      const actual = versionOf(stream);
      if (expectedVersion !== 'any' && expectedVersion !== actual) {
        throw new ConcurrencyConflict(stream, expectedVersion, actual);
      }
      let streamEvents = streams.get(stream);
      if (!streamEvents) {
        streamEvents = [];
        streams.set(stream, streamEvents);
      }
      const firstSeq = log.length + 1;
      const written: EventEnvelope[] = prepared.map((e, i) =>
        Object.freeze(toEnvelope(firstSeq + i, stream, actual + 1 + i, e)),
      );
      log.push(...written);
      streamEvents.push(...written);
      // Let the caller's await settle like a real write would, then publish (durable now).
      await Promise.resolve();
      for (const event of written) live.next(event);
      return {
        version: actual + written.length,
        firstSeq,
        lastSeq: firstSeq + written.length - 1,
        events: written,
      };
    },

    readStream(stream: string, fromVersion = 1): AsyncIterable<EventEnvelope> {
      open('readStream');
      checkStream(stream);
      return readFrom(streams.get(stream) ?? [], Math.max(1, fromVersion) - 1);
    },

    readAll(fromSeq = 1): AsyncIterable<EventEnvelope> {
      open('readAll');
      return readFrom(log, Math.max(1, fromSeq) - 1);
    },

    async *readAllBatches(fromSeq = 1): AsyncIterable<readonly EventEnvelope[]> {
      open('readAll');
      for (let i = Math.max(1, fromSeq) - 1; i < log.length; i += 1000) yield log.slice(i, i + 1000);
    },

    subscribe(fromSeq = 1): Observable<EventEnvelope> {
      open('subscribe');
      return catchUpThenLive(fromSeq, (from) => readFrom(log, from - 1), live);
    },

    async streamVersion(stream: string): Promise<number> {
      open('streamVersion');
      checkStream(stream);
      return versionOf(stream);
    },

    async listStreams(prefix = ''): Promise<StreamInfo[]> {
      open('listStreams');
      return [...streams.entries()]
        .filter(([name]) => name.startsWith(prefix))
        .map(([name, events]) => ({ stream: name, version: events.length }))
        .sort((a, b) => (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0));
    },

    lastSeq(): number {
      return log.length;
    },

    async saveSnapshot<S>(snapshot: StoredSnapshot<S>): Promise<void> {
      open('saveSnapshot');
      checkStream(snapshot.stream);
      const current = versionOf(snapshot.stream);
      if (!Number.isSafeInteger(snapshot.version) || snapshot.version < 1 || snapshot.version > current) {
        throw new InvalidArgument('version', `must be within 1..${current} for stream ${snapshot.stream}`);
      }
      // Stored as JSON, like the LevelDB store, so both give back an independent copy.
      snapshots.set(snapshot.stream, JSON.stringify(snapshot));
    },

    async loadSnapshot<S>(stream: string): Promise<StoredSnapshot<S> | undefined> {
      open('loadSnapshot');
      const json = snapshots.get(stream);
      return json === undefined ? undefined : (JSON.parse(json) as StoredSnapshot<S>);
    },

    async loadSnapshots<S>(): Promise<Map<string, StoredSnapshot<S>>> {
      open('loadSnapshots');
      return new Map([...snapshots].map(([stream, json]) => [stream, JSON.parse(json) as StoredSnapshot<S>]));
    },

    async verify(): Promise<VerifyReport> {
      open('verify');
      const problems: VerifyProblem[] = [];
      log.forEach((event, i) => {
        if (event.seq !== i + 1)
          problems.push({ kind: 'seq-gap', seq: event.seq, message: `expected seq ${i + 1}` });
      });
      return {
        ok: problems.length === 0,
        events: log.length,
        streams: streams.size,
        lastSeq: log.length,
        problems,
      };
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      live.complete();
    },
  };
  return store;
}
