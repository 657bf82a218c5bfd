// The API's method table: name, params schema, result, when legal, handler, one file per entity. It is also
// the source of docs/api.md.
import { containerMethods } from './container.js';
import { daemonMethods } from './daemon.js';
import { eventsMethods } from './events.js';
import { execMethods } from './exec.js';
import { guestMethods } from './guest.js';
import { sandboxMethods } from './sandbox.js';
import type { MethodSpec } from './spec.js';
import { templateMethods } from './template.js';

export { readEventPage } from './events.js';
export type {
  ConnectionContext,
  DaemonFacts,
  EventLogReader,
  MethodContext,
  MethodSpec,
  SubscriptionSpec,
  TransitionProblem,
} from './spec.js';

/** Every method the daemon serves, in docs order. */
export const methods = [
  ...daemonMethods,
  ...sandboxMethods,
  ...containerMethods,
  ...execMethods,
  ...eventsMethods,
  ...guestMethods,
  ...templateMethods,
] as const satisfies readonly MethodSpec[];

export type MethodName = (typeof methods)[number]['name'];

/** Methods by name. */
export const methodTable: ReadonlyMap<string, MethodSpec> = new Map(
  methods.map((m) => [m.name, m as MethodSpec]),
);
