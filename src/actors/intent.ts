// The intent an effect serves, visible to the ports it calls (for idempotency keys in logs and fakes).
import { AsyncLocalStorage } from 'node:async_hooks';

export interface Intent {
  /** Id of the event that asked for the effect: its idempotency key. */
  readonly eventId: string;
  /** The effect's name (`launchVm`, `createContainer`, …). */
  readonly effect: string;
  /** True when recovery runs the effect again for an intent whose outcome never reached the log. */
  readonly retry: boolean;
}

const intents = new AsyncLocalStorage<Intent>();

/** The intent of the effect whose call is running now, if any (port implementations may log or key on it). */
export function currentIntent(): Intent | undefined {
  return intents.getStore();
}

/** Runs `fn` with `intent` visible to `currentIntent()` in everything it awaits. */
export function withIntent<T>(intent: Intent, fn: () => Promise<T>): Promise<T> {
  return intents.run(intent, fn);
}
