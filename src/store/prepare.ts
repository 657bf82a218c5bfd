// Checks an append's arguments and turns NewEvents into stored form (validated data, current schema, id, time).
import { nanoid } from 'nanoid';
import { InvalidArgument, SandboxdError } from '../errors/index.js';
import type { EventEnvelope, EventRegistry, NewEvent } from '../events/index.js';
import type { ExpectedVersion } from './types.js';

/** An event ready to be given its seq and version: what the codec stores. */
export interface PreparedEvent {
  readonly type: string;
  /** The schema `data` is stored at (the type's current one at append time). */
  readonly schema: number;
  readonly id: string;
  readonly at: string;
  readonly causationId?: string;
  readonly correlationId?: string;
  readonly data: unknown;
  /** `data` as JSON text, so the codec need not serialise it again. */
  readonly dataJson: string;
}

/** Longest stream name accepted; keys embed it, so keep it bounded. */
export const maxStreamLength = 512;

/** Throws InvalidArgument('stream') unless `stream` can be used as a key (non-empty, no NUL, bounded). */
export function checkStream(stream: unknown): asserts stream is string {
  if (typeof stream !== 'string' || stream.length === 0) {
    throw new InvalidArgument('stream', 'must be a non-empty string');
  }
  if (stream.length > maxStreamLength) {
    throw new InvalidArgument('stream', `longer than ${maxStreamLength} characters`);
  }
  // NUL separates the stream name from the version in index keys.
  if (stream.includes('\0')) throw new InvalidArgument('stream', 'must not contain NUL');
}

/** Throws InvalidArgument('expectedVersion') unless it is 'any' or a non-negative safe integer. */
export function checkExpectedVersion(expected: unknown): asserts expected is ExpectedVersion {
  if (expected === 'any') return;
  if (typeof expected !== 'number' || !Number.isSafeInteger(expected) || expected < 0) {
    throw new InvalidArgument('expectedVersion', `must be 'any' or an integer ≥ 0, got ${String(expected)}`);
  }
}

function optionalId(value: unknown, field: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > 128) {
    throw new InvalidArgument(field, 'must be a non-empty string of at most 128 characters');
  }
  return value;
}

/** Re-labels a validator's error with the event's position so the caller sees `events[2].data.pid`. */
function dataError(index: number, err: unknown): InvalidArgument {
  const base = `events[${index}].data`;
  if (err instanceof InvalidArgument) {
    const prefix = `${err.field}: `;
    const message = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    return new InvalidArgument(err.field ? `${base}.${err.field}` : base, message);
  }
  if (err instanceof SandboxdError) return new InvalidArgument(base, err.message);
  return new InvalidArgument(base, err instanceof Error ? err.message : String(err));
}

/**
 * Validates every event against `registry` and fills schema, id and time.
 * Data is the validator's output passed through JSON, so what is stored is exactly what reads return.
 * Throws InvalidArgument naming the offending field; nothing is written then.
 */
export function prepareEvents(
  registry: EventRegistry,
  events: readonly NewEvent[],
  at: string = new Date().toISOString(),
): PreparedEvent[] {
  if (!Array.isArray(events) || events.length === 0) {
    throw new InvalidArgument('events', 'must be a non-empty array');
  }
  const out: PreparedEvent[] = new Array(events.length);
  for (let i = 0; i < events.length; i++) {
    const event = events[i];
    if (event === null || typeof event !== 'object')
      throw new InvalidArgument(`events[${i}]`, 'must be an object');
    const { type } = event;
    if (typeof type !== 'string' || !registry.has(type)) {
      throw new InvalidArgument(`events[${i}].type`, `unknown event type ${JSON.stringify(type)}`);
    }
    let data: unknown;
    try {
      data = registry.validate(type, event.data);
    } catch (err) {
      throw dataError(i, err);
    }
    let json: string | undefined;
    try {
      json = JSON.stringify(data);
    } catch (err) {
      throw new InvalidArgument(`events[${i}].data`, `not serialisable: ${(err as Error).message}`);
    }
    const causationId = optionalId(event.causationId, `events[${i}].causationId`);
    const correlationId = optionalId(event.correlationId, `events[${i}].correlationId`);
    out[i] = {
      type,
      schema: registry.currentSchema(type),
      id: optionalId(event.id, `events[${i}].id`) ?? nanoid(),
      at,
      ...(causationId === undefined ? {} : { causationId }),
      ...(correlationId === undefined ? {} : { correlationId }),
      data: json === undefined ? null : JSON.parse(json),
      dataJson: json ?? 'null',
    };
  }
  return out;
}

/** The envelope of a prepared event once the store has given it its seq and stream version. */
export function toEnvelope(seq: number, stream: string, version: number, e: PreparedEvent): EventEnvelope {
  return {
    seq,
    stream,
    version,
    type: e.type,
    schema: e.schema,
    id: e.id,
    at: e.at,
    ...(e.causationId === undefined ? {} : { causationId: e.causationId }),
    ...(e.correlationId === undefined ? {} : { correlationId: e.correlationId }),
    data: e.data,
  };
}
