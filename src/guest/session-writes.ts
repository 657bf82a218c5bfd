// Writes of host sessions to one port, in order and one at a time: everything queued while a write is under way
// goes in the next one (each is a thread-pool round trip, costly under TCG). Entries of a session that ended are
// dropped, never sent to a later host. Shared by the agent channel and the output port.

interface Entry {
  readonly generation: number;
  readonly buffers: readonly Buffer[];
  readonly done: () => void;
}

export interface SessionWritesOptions {
  /** Writes one batch to the port. */
  readonly write: (buffers: readonly Buffer[]) => Promise<void>;
  /** The live session's generation: entries of any other are skipped. */
  readonly generation: () => number;
  /** A write failed (its entries count as done). */
  readonly onError: (err: unknown) => void;
}

export class SessionWrites {
  readonly #o: SessionWritesOptions;
  #pending: Entry[] = [];
  #writing = false;
  #drained: Promise<void> = Promise.resolve();

  constructor(options: SessionWritesOptions) {
    this.#o = options;
  }

  /** Resolves once the buffers were written (or skipped: their session ended, or the write failed). */
  enqueue(generation: number, buffers: readonly Buffer[]): Promise<void> {
    return new Promise((resolve) => {
      this.#pending.push({ generation, buffers, done: resolve });
      if (!this.#writing) this.#drained = this.#drain();
    });
  }

  /** Resolves when everything queued so far is written. */
  get drained(): Promise<void> {
    return this.#drained;
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending.splice(0);
        const current = this.#o.generation();
        const live = batch.filter((entry) => entry.generation === current).flatMap((entry) => entry.buffers);
        if (live.length > 0) {
          try {
            await this.#o.write(live);
          } catch (err) {
            this.#o.onError(err);
          }
        }
        for (const entry of batch) entry.done();
      }
    } finally {
      this.#writing = false;
    }
  }
}
