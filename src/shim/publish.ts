// Events to containerd: each one packed as containerd's typeurl does and forwarded over ttrpc
// (containerd.services.events.ttrpc.v1.Events/Forward on TTRPC_ADDRESS), one at a time, in order.
import { TtrpcClient } from '../ttrpc/index.js';
import { EVENTS_SERVICE, encode, packAny, timestamp } from './protos.js';

/** Task event topics as containerd's runtime names them (runtime/events.go). */
export const TOPICS = {
  'containerd.events.TaskCreate': '/tasks/create',
  'containerd.events.TaskStart': '/tasks/start',
  'containerd.events.TaskExit': '/tasks/exit',
  'containerd.events.TaskDelete': '/tasks/delete',
  'containerd.events.TaskExecAdded': '/tasks/exec-added',
  'containerd.events.TaskExecStarted': '/tasks/exec-started',
  'containerd.events.TaskPaused': '/tasks/paused',
  'containerd.events.TaskResumed': '/tasks/resumed',
  'containerd.events.TaskOOM': '/tasks/oom',
} as const;

export type TaskEventType = keyof typeof TOPICS;

export interface TaskEvent {
  readonly type: TaskEventType;
  readonly namespace: string;
  readonly value: Record<string, unknown>;
  /** When it happened (ms since the epoch); now if absent. */
  readonly at?: number;
  /** Sent only once this settles (a TaskExit waits for its process's output to reach the fifos). */
  readonly ready?: Promise<unknown>;
}

/** The ForwardRequest bytes for one event. */
export function forwardRequest(event: TaskEvent): Uint8Array {
  return encode('containerd.services.events.ttrpc.v1.ForwardRequest', {
    envelope: {
      timestamp: timestamp(event.at ?? Date.now()),
      namespace: event.namespace,
      topic: TOPICS[event.type],
      event: packAny(event.type, event.value),
    },
  });
}

/** Sends one event on an open ttrpc connection to containerd. */
export async function forward(client: TtrpcClient, event: TaskEvent, timeoutMs = 10_000): Promise<void> {
  await client.call(EVENTS_SERVICE, 'Forward', forwardRequest(event), {
    timeoutMs,
    metadata: { 'containerd-namespace-ttrpc': [event.namespace] },
  });
}

/**
 * A queue that publishes events strictly in the order given, reconnecting to containerd when the
 * connection broke, retrying an event until containerd took it (an event is never skipped).
 */
export class EventPublisher {
  private client: TtrpcClient | undefined;
  private queue: TaskEvent[] = [];
  private running: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly address: string,
    private readonly onError: (err: unknown, event: TaskEvent) => void = () => undefined,
  ) {}

  publish(event: TaskEvent): void {
    if (this.closed) return;
    this.queue.push(event);
    this.running ??= this.drain().finally(() => {
      this.running = undefined;
    });
  }

  /** Resolves once every event queued so far was taken by containerd (or the publisher closed). */
  async flush(): Promise<void> {
    while (this.running) await this.running;
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    this.client?.close();
  }

  private async drain(): Promise<void> {
    let delay = 50;
    while (this.queue.length > 0 && !this.closed) {
      const event = this.queue[0] as TaskEvent;
      try {
        if (event.ready) await event.ready;
        if (!this.client) {
          const c = await TtrpcClient.connect(this.address.replace(/^unix:\/\//, ''));
          c.onClose(() => {
            if (this.client === c) this.client = undefined;
          });
          this.client = c;
        }
        await forward(this.client, event);
        this.queue.shift();
        delay = 50;
      } catch (err) {
        this.onError(err, event);
        this.client?.close();
        this.client = undefined;
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 2000);
      }
    }
  }
}
