// The one sleep: a pause that an AbortSignal cuts short (it resolves early, it never rejects), so a retry loop
// stops waiting as soon as the work it serves is called off.
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    // The listener goes with the timer: a long-lived signal would otherwise collect one listener per retry.
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
