// Turns an async iterable of batches into an async iterable of items without an async generator per item.

/**
 * An async generator costs several microtask hops per `yield`; serving items from the current batch
 * through already-settled promises costs one. Replay reads millions of events, so this matters.
 * `return()` (a `break` in for-await) closes the underlying iterator, which closes the LevelDB iterator.
 */
export function flatten<T>(batches: AsyncIterable<readonly T[]>): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const source = batches[Symbol.asyncIterator]();
      let batch: readonly T[] = [];
      let index = 0;
      let done = false;
      const pull = async (): Promise<IteratorResult<T>> => {
        for (;;) {
          const next = await source.next();
          if (next.done) {
            done = true;
            return { done: true, value: undefined };
          }
          batch = next.value;
          index = 0;
          if (batch.length > 0) return { done: false, value: batch[index++]! };
        }
      };
      return {
        next(): Promise<IteratorResult<T>> {
          if (index < batch.length) return Promise.resolve({ done: false, value: batch[index++]! });
          if (done) return Promise.resolve({ done: true, value: undefined });
          return pull();
        },
        async return(): Promise<IteratorResult<T>> {
          done = true;
          batch = [];
          await source.return?.();
          return { done: true, value: undefined };
        },
      };
    },
  };
}
