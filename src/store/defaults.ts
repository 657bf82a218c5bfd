// Defaults shared by both stores: the event registry to validate against and the logger.
import { type Logger, pino } from 'pino';
import * as events from '../events/index.js';
import { EventRegistry } from '../events/index.js';

/**
 * The catalogue's `eventRegistry` once src/events exports one; until then an empty registry
 * (which refuses every type, so callers must pass theirs). Read through the namespace so this
 * compiles whether or not the catalogue exists yet.
 */
export function defaultRegistry(): EventRegistry {
  const fromCatalogue = (events as unknown as { eventRegistry?: unknown }).eventRegistry;
  return fromCatalogue instanceof EventRegistry ? fromCatalogue : new EventRegistry();
}

/** Store logs go to stderr: stdout may be a protocol channel (CLI --json, test fixtures). */
export function defaultLogger(): Logger {
  return pino(
    { name: 'sandboxd.store', level: process.env.SANDBOXD_LOG_LEVEL ?? 'info' },
    pino.destination(2),
  );
}
