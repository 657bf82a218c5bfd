// Catch-up then live, with no gap and no duplicate across the switch (DESIGN.md "Lessons").
import { Observable, type Subject } from 'rxjs';
import type { EventEnvelope } from '../events/index.js';

/** Live events held while catching up; past this, catch-up restarts from the last delivered seq. */
export const defaultLiveBufferLimit = 10_000;

/**
 * Every event with seq ≥ fromSeq exactly once, in seq order. Attaches to `live` first into a bounded
 * buffer, reads the log to its end, drains the buffer skipping seq ≤ last delivered, then follows `live`.
 * On buffer overflow it reads the log again from the last delivered seq. `live` must carry only durable
 * events, in seq order; `readAll` must see every event `live` has carried before it was called.
 */
export function catchUpThenLive(
  fromSeq: number,
  readAll: (fromSeq: number) => AsyncIterable<EventEnvelope>,
  live: Subject<EventEnvelope>,
  bufferLimit = defaultLiveBufferLimit,
): Observable<EventEnvelope> {
  return new Observable<EventEnvelope>((subscriber) => {
    let last = Math.max(1, Math.floor(fromSeq)) - 1;
    let caughtUp = false;
    let buffer: EventEnvelope[] = [];
    let overflowed = false;

    const deliver = (event: EventEnvelope): void => {
      if (event.seq <= last) return;
      last = event.seq;
      subscriber.next(event);
    };

    const liveSubscription = live.subscribe({
      next: (event) => {
        if (caughtUp) deliver(event);
        else if (buffer.length < bufferLimit) buffer.push(event);
        else overflowed = true;
      },
      error: (err) => subscriber.error(err),
      complete: () => subscriber.complete(),
    });

    const catchUp = async (): Promise<void> => {
      for (;;) {
        for await (const event of readAll(last + 1)) {
          if (subscriber.closed) return;
          deliver(event);
        }
        if (subscriber.closed) return;
        if (overflowed) {
          // Some live events were dropped from the buffer: everything up to them is durable, read again.
          overflowed = false;
          buffer = [];
          continue;
        }
        // Synchronous from here to `caughtUp = true`: no live event can slip between drain and switch.
        for (const event of buffer) deliver(event);
        buffer = [];
        caughtUp = true;
        return;
      }
    };
    catchUp().catch((err) => subscriber.error(err));

    return () => {
      liveSubscription.unsubscribe();
      buffer = [];
    };
  });
}
