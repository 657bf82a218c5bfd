// The subscriptions of one API connection: notifications in order after the response, a slow consumer dropped.
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { SubscriptionSpec } from './methods/index.js';

interface Subscription {
  spec: SubscriptionSpec;
  teardown?: () => void;
  ended: boolean;
}

export interface ConnectionSubscriptionsOptions {
  /** The connection's id, part of each subscription id. */
  readonly connectionId: number;
  readonly socket: Socket;
  /** Bytes the socket may have queued before a subscription that emits is dropped. */
  readonly queueBytes: number;
  readonly logger: Logger;
  /** Writes one message to the connection. */
  readonly write: (message: unknown) => void;
}

/**
 * The live subscriptions of one connection. A subscription ends when its feed ends it, when the client
 * unsubscribes, when it is dropped as a slow consumer (with a `subscription.dropped` notice), or with the connection.
 */
export class ConnectionSubscriptions {
  readonly #options: ConnectionSubscriptionsOptions;
  readonly #subscriptions = new Map<string, Subscription>();
  #nextSub = 1;

  constructor(options: ConnectionSubscriptionsOptions) {
    this.#options = options;
  }

  /** Registers `spec` and returns its id; its feed starts after the response that carries the id. */
  subscribe(spec: SubscriptionSpec): string {
    const { connectionId, socket, queueBytes, logger, write } = this.#options;
    const id = `${spec.kind}-${connectionId}-${this.#nextSub++}`;
    const entry: Subscription = { spec, ended: false };
    this.#subscriptions.set(id, entry);
    const emit = (method: string, params: Record<string, unknown>): boolean => {
      if (entry.ended) return false;
      if (socket.writableLength > queueBytes) {
        const queued = socket.writableLength;
        this.end(id);
        logger.warn({ conn: connectionId, subscription: id, queued }, 'slow subscriber dropped');
        write({
          jsonrpc: '2.0',
          method: 'subscription.dropped',
          params: {
            subscription: id,
            kind: spec.kind,
            reason: `slow consumer: ${queued} bytes queued (limit ${queueBytes})`,
            ...spec.noticeData?.(),
          },
        });
        return false;
      }
      write({ jsonrpc: '2.0', method, params: { subscription: id, ...params } });
      return true;
    };
    const end = (method: string, params: Record<string, unknown>): void => {
      if (entry.ended) return;
      write({ jsonrpc: '2.0', method, params: { subscription: id, ...params } });
      this.end(id);
    };
    // The response with the subscription id must reach the client before the first notification.
    setImmediate(() => {
      if (entry.ended) return;
      const teardown = spec.start(emit, end);
      if (entry.ended) teardown();
      else entry.teardown = teardown;
    });
    return id;
  }

  /** Ends the subscription `id` (its teardown runs); false when there is none by that id. */
  end(id: string): boolean {
    const sub = this.#subscriptions.get(id);
    if (!sub) return false;
    this.#subscriptions.delete(id);
    sub.ended = true;
    sub.teardown?.();
    return true;
  }

  /** Ends every subscription of the connection. */
  endAll(): void {
    for (const id of [...this.#subscriptions.keys()]) this.end(id);
  }
}
