// A sandbox stop ends its containers as `docker stop` does: SIGTERM, up to a grace period, then SIGKILL.
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Agent } from '../agent/index.js';
import type { ContainerActor, SandboxActor } from './entity.js';

/** docker stop's default grace: how long a container has between SIGTERM and SIGKILL. */
export const DEFAULT_STOP_GRACE_MS = 10_000;
/** How long a SIGKILLed init has to be reported gone before the VM goes anyway. */
const KILL_WAIT_MS = 5_000;
/** One signal's round trip to the guest. */
const SIGNAL_MS = 5_000;

/**
 * The grace a stop gives its containers within the stop's own deadline: what was asked (or docker's 10 s), but
 * at most half the deadline, so the SIGKILL round and the VM's powerdown still fit.
 */
export function stopGraceMs(asked: number | undefined, deadlineMs: number): number {
  return Math.min(asked ?? DEFAULT_STOP_GRACE_MS, Math.floor(deadlineMs / 2));
}

/** Resolves once every container has ended, or `ms` passed, or `signal` aborted (never rejects). */
async function allEnded(
  containers: readonly ContainerActor[],
  ms: number,
  signal: AbortSignal,
): Promise<void> {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  const timer = delay(ms, undefined, { signal: stop.signal }).catch(() => undefined);
  try {
    await Promise.race([Promise.all(containers.map((c) => c.settled(() => c.is('ended')))), timer]);
  } finally {
    signal.removeEventListener('abort', onAbort);
    stop.abort();
  }
}

/**
 * Sends SIGTERM to the init of each running container of `sandbox`, waits up to `graceMs` for them to end, then
 * SIGKILLs those still running and waits briefly again. The exits come back from the guest's event feed and are
 * recorded as ContainerExited (exitCode 0 for a clean end, 137 with signal SIGKILL for a forced one). Paused
 * containers are left to the VM's end: a frozen process cannot run its handler. Never throws.
 */
export async function stopContainersGracefully(
  ports: { agent: Agent; logger: Logger },
  sandbox: SandboxActor,
  graceMs: number,
  deadlineMs: number,
  signal: AbortSignal,
): Promise<void> {
  const signalMs = Math.min(SIGNAL_MS, Math.floor(deadlineMs / 8));
  const killWaitMs = Math.min(KILL_WAIT_MS, Math.floor(deadlineMs / 8));
  const running = [...sandbox.containers.values()].filter((c) => c.state === 'running');
  if (running.length === 0) return;
  const send = async (c: ContainerActor, sig: string) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        ports.agent.signalProcess(sandbox.id, c.id, '', sig, false),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${signalMs} ms`)), signalMs);
        }),
      ]);
    } catch (err) {
      // An init that ended meanwhile cannot be signalled: nothing to do.
      ports.logger.debug(
        { err, sandboxId: sandbox.id, containerId: c.id, signal: sig },
        'stop signal failed',
      );
    } finally {
      clearTimeout(timer);
    }
  };
  ports.logger.info(
    { sandboxId: sandbox.id, containers: running.map((c) => c.id), graceMs },
    'stopping containers: SIGTERM',
  );
  await Promise.all(running.map((c) => send(c, 'SIGTERM')));
  await allEnded(running, graceMs, signal);
  const stubborn = running.filter((c) => !c.is('ended'));
  if (stubborn.length > 0 && !signal.aborted) {
    ports.logger.info(
      { sandboxId: sandbox.id, containers: stubborn.map((c) => c.id), graceMs },
      'containers still running after the grace period: SIGKILL',
    );
    await Promise.all(stubborn.map((c) => send(c, 'SIGKILL')));
    await allEnded(stubborn, killWaitMs, signal);
  }
}
