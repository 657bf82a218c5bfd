// Ctrl-C, SIGTERM and SIGHUP while sandboxctl waits on the daemon: caught for the whole command, so a run is
// cancelled (and cleaned up) at any stage instead of leaving a VM behind when the CLI dies mid-boot.
import { constants } from 'node:os';

export type Interrupt = 'SIGINT' | 'SIGTERM' | 'SIGHUP';

const INTERRUPTS: readonly Interrupt[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Thrown by `Interrupts.race` once a signal arrived: the step it bounded is abandoned. */
export class Interrupted extends Error {
  constructor(readonly signal: Interrupt) {
    super(`interrupted by ${signal}`);
  }
}

export interface Interrupts {
  /** The first signal received, if any. */
  readonly received: Interrupt | undefined;
  /** How many signals arrived so far. */
  readonly count: number;
  /** Resolves with `step`, or rejects with Interrupted as soon as a signal arrives (at once if one did). */
  race<T>(step: Promise<T>): Promise<T>;
  /** Calls `fn` on every signal from now on (after the first, too). */
  onSignal(fn: (signal: Interrupt, count: number) => void): void;
  /** Stops catching: the default handlers (exit) apply again. */
  dispose(): void;
}

/** Catches SIGINT, SIGTERM and SIGHUP until `dispose()`. While caught, they never end the process by themselves. */
export function catchInterrupts(): Interrupts {
  let received: Interrupt | undefined;
  let count = 0;
  const listeners: ((signal: Interrupt, count: number) => void)[] = [];
  let rejectAll: (err: Interrupted) => void = () => undefined;
  const interrupted = new Promise<never>((_, reject) => {
    rejectAll = reject;
  });
  // Nobody may be racing when the signal comes: that must not be an unhandled rejection.
  interrupted.catch(() => undefined);
  const handlers = INTERRUPTS.map((signal) => {
    const handler = () => {
      count++;
      if (received === undefined) {
        received = signal;
        rejectAll(new Interrupted(signal));
      }
      for (const fn of listeners) fn(signal, count);
    };
    process.on(signal, handler);
    return [signal, handler] as const;
  });
  return {
    get received() {
      return received;
    },
    get count() {
      return count;
    },
    race: (step) => Promise.race([step, interrupted]),
    onSignal: (fn) => void listeners.push(fn),
    dispose() {
      for (const [signal, handler] of handlers) process.off(signal, handler);
    },
  };
}

/** The shell's exit code for a process ended by `signal` (130 for SIGINT, 143 for SIGTERM), as docker exits. */
export function signalExitCode(signal: Interrupt): number {
  return 128 + constants.signals[signal];
}
