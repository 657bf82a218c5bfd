// What every method of the API is made of: its spec, the context a handler gets, and the params shared by
// several entities' methods.
import { z } from 'zod';
import type { Runtime } from '../../actors/index.js';
import type { EventEnvelope } from '../../events/index.js';
import type { Accel } from '../../hypervisor/index.js';
import type { OutputKeeper } from '../../logs/index.js';
import type { EventStore } from '../../store/index.js';
import type { TemplateStore } from '../../templates/index.js';
import type { ApiTraffic } from '../metrics.js';
import { execIdSchema, idSchema } from '../schemas.js';

/** The part of the event store the API reads (never writes). */
export type EventLogReader = Pick<
  EventStore,
  'readAll' | 'readStream' | 'listStreams' | 'lastSeq' | 'verify' | 'stats'
>;

/** One event the machines would not have allowed (from the machines' checkTransitions). */
export interface TransitionProblem {
  readonly seq: number;
  readonly stream: string;
  readonly type: string;
  readonly message: string;
}

/** A live feed the connection forwards as notifications until it ends, the client cancels, or it is dropped. */
export interface SubscriptionSpec {
  /** 'events' | 'output': shown in the drop notice. */
  readonly kind: string;
  /**
   * Starts the feed. `emit(method, params)` sends one notification (params get `subscription`); it
   * returns false once the subscription was dropped (slow consumer). `end(method, params)` sends a
   * last notification and removes the subscription. Returns the teardown.
   */
  start(
    emit: (method: string, params: Record<string, unknown>) => boolean,
    end: (method: string, params: Record<string, unknown>) => void,
  ): () => void;
  /** Extra fields for the drop notice (e.g. the last delivered seq, to resume from). */
  noticeData?(): Record<string, unknown>;
}

/** What a handler may ask of the connection it serves. */
export interface ConnectionContext {
  readonly id: number;
  /** Registers a subscription bound to this connection; returns its id. */
  subscribe(spec: SubscriptionSpec): string;
  /** Ends a subscription of this connection; false when it has none by that id. */
  unsubscribe(id: string): boolean;
}

/** Static facts daemon.info reports. */
export interface DaemonFacts {
  readonly version: string;
  readonly pid: number;
  readonly startedAt: string;
  readonly stateDir?: string;
  readonly socket?: string;
  /** Whether sandbox starts restore from VM templates (sandboxd --templates). */
  readonly templates?: 'on' | 'off';
}

export interface MethodContext {
  readonly runtime: Runtime;
  /** The hypervisor's accelerator (probed once), for daemon.info before any sandbox started. */
  readonly accel?: () => Promise<Accel>;
  readonly events: EventLogReader;
  readonly facts: DaemonFacts;
  readonly connection: ConnectionContext;
  readonly checkTransitions?: (events: readonly EventEnvelope[]) => readonly TransitionProblem[];
  /** The server's traffic counters, for daemon.metrics. */
  readonly traffic?: () => ApiTraffic;
  /** The host logs of every process's output (absent: output is read from the guest's buffer). */
  readonly logs?: OutputKeeper;
  /** The VM templates in the image cache (template.*); absent in daemons built without one. */
  readonly templates?: TemplateStore;
}

export interface MethodSpec<P extends z.ZodType = z.ZodType> {
  readonly name: string;
  readonly summary: string;
  /** When the call is legal / what it appends (Firecracker-style action docs). */
  readonly when?: string;
  readonly params: P;
  /** The result, in words (docs). */
  readonly result: string;
  handler(params: z.output<P>, ctx: MethodContext): unknown;
}

/** A method spec whose handler records which connection asked (events explain). */
export function method<P extends z.ZodType>(spec: MethodSpec<P>): MethodSpec<P> {
  // The runtime records which connection asked with the events a command appends (events explain).
  const handler: MethodSpec<P>['handler'] = (params, ctx) =>
    ctx.runtime.asking
      ? ctx.runtime.asking({ connection: ctx.connection.id }, () => spec.handler(params, ctx))
      : spec.handler(params, ctx);
  return { ...spec, handler };
}

export const sandboxRef = z.strictObject({ id: idSchema });
export const sandboxIdRef = z.strictObject({ sandboxId: idSchema });
export const containerRef = z.strictObject({ sandboxId: idSchema, id: idSchema });
export const execRef = { sandboxId: idSchema, containerId: idSchema, execId: execIdSchema };
export const timeoutMsSchema = z.number().int().min(1).max(3_600_000);
