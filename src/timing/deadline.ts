// The one deadline helper: a step bounded in time, its work told to stop (an AbortSignal) when time is up,
// so a bounded wait never leaves the work it bounded running on unseen.
import { Timeout } from '../errors/index.js';

export interface DeadlineOptions {
  /** Aborted at expiry: pass its signal to the work so that it stops too. */
  readonly controller?: AbortController;
  /** Also called at expiry (before the Timeout rejects). */
  readonly onExpiry?: () => void;
}

/** Resolves with `work`, or rejects with Timeout(step, ms) once `ms` passed; `ms` undefined: no deadline. */
export function withDeadline<T>(
  work: Promise<T>,
  ms: number | undefined,
  step: string,
  options: DeadlineOptions = {},
): Promise<T> {
  if (ms === undefined) return work;
  let timer: NodeJS.Timeout | undefined;
  const expiry = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      options.controller?.abort(new Timeout(step, ms));
      options.onExpiry?.();
      reject(new Timeout(step, ms));
    }, ms);
  });
  return Promise.race([work, expiry]).finally(() => clearTimeout(timer));
}
