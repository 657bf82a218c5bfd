// Exits and OOM kills the agent reports unasked: a numbered, bounded history so a host that reconnects catches up.
import { randomUUID } from 'node:crypto';

export interface GuestExitStatus {
  readonly exitCode: number;
  readonly signal: string;
  readonly oomKilled: boolean;
}

export type GuestEvent =
  | {
      readonly type: 'processExited';
      readonly containerId: string;
      readonly execId: string;
      readonly status: GuestExitStatus;
    }
  | { readonly type: 'oom'; readonly containerId: string };

export interface NumberedEvent {
  readonly seq: number;
  readonly event: GuestEvent;
}

/** The history keeps the last `capacity` events; `bootId` changes with every agent process. */
export class GuestEventLog {
  readonly bootId = randomUUID();
  readonly #capacity: number;
  #history: NumberedEvent[] = [];
  #seq = 0;
  #listeners = new Set<(event: NumberedEvent) => void>();
  #oomQueue: string[] = [];
  #oomWaiters: ((containerId: string) => void)[] = [];

  constructor(capacity = 1024) {
    this.#capacity = capacity;
  }

  publish(event: GuestEvent): void {
    const numbered = { seq: ++this.#seq, event };
    this.#history.push(numbered);
    if (this.#history.length > this.#capacity) this.#history.shift();
    if (event.type === 'oom') {
      const waiter = this.#oomWaiters.shift();
      if (waiter) waiter(event.containerId);
      else this.#oomQueue.push(event.containerId);
    }
    for (const listener of this.#listeners) listener(numbered);
  }

  /** Events with seq > afterSeq still held, then every new one; returns the unsubscribe function. */
  follow(afterSeq: number, listener: (event: NumberedEvent) => void): () => void {
    for (const numbered of this.#history) if (numbered.seq > afterSeq) listener(numbered);
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Kata's GetOOMEvent: the next OOM not yet handed out (each once), waiting for one if none is pending. */
  nextOom(signal: AbortSignal): Promise<string | undefined> {
    const pending = this.#oomQueue.shift();
    if (pending !== undefined) return Promise.resolve(pending);
    return new Promise((resolve) => {
      const waiter = (containerId: string) => {
        signal.removeEventListener('abort', onAbort);
        resolve(containerId);
      };
      const onAbort = () => {
        this.#oomWaiters = this.#oomWaiters.filter((w) => w !== waiter);
        resolve(undefined);
      };
      this.#oomWaiters.push(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
