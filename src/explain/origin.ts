// Who asked for an event: the API (method and connection), recovery, or supervision — read from its correlationId.
import { assertNever } from '../errors/index.js';
import type { EventEnvelope } from '../events/index.js';

/** Who made an event happen. `method`/`connection` are absent for logs written before they were recorded. */
export type Origin =
  | { readonly by: 'api'; readonly method?: string; readonly connection?: number }
  | { readonly by: 'recovery' }
  | { readonly by: 'supervision'; readonly source?: 'hypervisor' | 'agent' | 'cascade' }
  /** The outcome of an effect the daemon ran for an earlier event (its causationId). */
  | { readonly by: 'effect' };

/**
 * correlationId values the runtime writes (opaque to the store, ≤ 128 chars):
 * `api:<method>:<connection>` for a client's command, `recovery` for what reconciliation appended or
 * retried, `supervision:<hypervisor|agent|cascade>` for what the daemon saw happen unasked.
 */
export const correlation = {
  api: (method: string, connection?: number): string =>
    connection === undefined ? `api:${method}` : `api:${method}:${connection}`,
  recovery: 'recovery',
  supervision: (source: 'hypervisor' | 'agent' | 'cascade'): string => `supervision:${source}`,
} as const;

/** Types a client's command appends (the intents); the others are outcomes or happenings. */
const commandTypes = new Set([
  'SandboxCreated',
  'SandboxStartRequested',
  'SandboxPauseRequested',
  'SandboxResumeRequested',
  'SandboxStopRequested',
  'SandboxDeleteRequested',
  'SandboxResizeRequested',
  /** Logs older than SandboxResizeRequested: the resize was recorded once, after QEMU took it. */
  'SandboxResized',
  'GuestNetworkUpdateRequested',
  /** Logs older than GuestNetworkUpdateRequested: the change was recorded once, after the guest took it. */
  'GuestNetworkUpdated',
  'ContainerCreateRequested',
  'ContainerStartRequested',
  'ContainerPauseRequested',
  'ContainerResumeRequested',
  'ContainerDeleteRequested',
  'ContainerUpdateRequested',
  /** Logs older than ContainerUpdateRequested: the update was recorded once, after the guest took it. */
  'ContainerUpdated',
  'ExecRequested',
  'ExecCreated',
  'ExecStartRequested',
  'ExecDeleted',
]);

/** Types only reconciliation appends. */
const recoveryTypes = new Set([
  'SandboxReattached',
  'SandboxLost',
  'ContainerExitedWhileDown',
  'ProcessExitedWhileDaemonDown',
]);

const hypervisorTypes = new Set(['VmExited']);
const agentTypes = new Set(['ContainerOomKilled', 'ContainerExited', 'ProcessExited']);
const cascadeTypes = new Set(['ContainerLost', 'ProcessLost']);

function parse(id: string): Origin | undefined {
  if (id === 'recovery') return { by: 'recovery' };
  if (id.startsWith('supervision:')) {
    const source = id.slice('supervision:'.length);
    if (source === 'hypervisor' || source === 'agent' || source === 'cascade')
      return { by: 'supervision', source };
    return { by: 'supervision' };
  }
  if (id.startsWith('api:')) {
    const [, method, conn] = id.split(':');
    const connection = conn === undefined ? Number.NaN : Number(conn);
    return {
      by: 'api',
      ...(method ? { method } : {}),
      ...(Number.isInteger(connection) ? { connection } : {}),
    };
  }
  return undefined;
}

/** Who made `event` happen: its correlationId when the runtime wrote one, else inferred from its type. */
export function originOf(event: EventEnvelope): Origin {
  const recorded = event.correlationId === undefined ? undefined : parse(event.correlationId);
  if (recorded) return recorded;
  // An interrupted intent recovery failed names the step 'recovery' (logs older than correlation ids).
  const error = (event.data as { error?: { step?: unknown } } | null)?.error;
  if (error?.step === 'recovery') return { by: 'recovery' };
  if (event.causationId !== undefined) return { by: 'effect' };
  if (commandTypes.has(event.type)) return { by: 'api' };
  if (recoveryTypes.has(event.type)) return { by: 'recovery' };
  if (hypervisorTypes.has(event.type)) return { by: 'supervision', source: 'hypervisor' };
  if (agentTypes.has(event.type)) return { by: 'supervision', source: 'agent' };
  if (cascadeTypes.has(event.type)) return { by: 'supervision', source: 'cascade' };
  return { by: 'effect' };
}

/** One line for people: `api sandbox.start (connection 3)`, `recovery`, `supervision (QEMU)`. */
export function describeOrigin(origin: Origin): string {
  switch (origin.by) {
    case 'api': {
      if (origin.method === undefined) return 'api';
      return origin.connection === undefined
        ? `api ${origin.method}`
        : `api ${origin.method} (connection ${origin.connection})`;
    }
    case 'recovery':
      return 'recovery';
    case 'supervision':
      return origin.source === 'hypervisor'
        ? 'supervision (QEMU)'
        : origin.source === 'agent'
          ? 'supervision (agent)'
          : origin.source === 'cascade'
            ? 'supervision (parent ended)'
            : 'supervision';
    case 'effect':
      return 'effect';
    default:
      return assertNever(origin);
  }
}
