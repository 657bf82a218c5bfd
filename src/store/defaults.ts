// Defaults shared by both stores: the event registry to validate against and the logger.
import { type Logger, pino } from 'pino';
import { type EventRegistry, eventRegistry } from '../events/index.js';

/** The catalogue's registry: every event type sandboxd writes. */
export function defaultRegistry(): EventRegistry {
  return eventRegistry;
}

/** Store logs go to stderr: stdout may be a protocol channel (CLI --json, test fixtures). */
export function defaultLogger(): Logger {
  return pino(
    { name: 'sandboxd.store', level: process.env.SANDBOXD_LOG_LEVEL ?? 'info' },
    pino.destination(2),
  );
}
