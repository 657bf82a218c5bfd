// crun invoked for the container flows: the monitored `crun run`/`crun exec` whose exit is handled, short crun
// commands that must succeed, signals to a pid, and the terminal helper's console socket.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Internal } from '../errors/index.js';
import type { Container, GuestContext, GuestPaths } from './container-record.js';
import { onProcessExit } from './exits.js';
import { type GuestProcess, openConsole, runCommand, spawnCrun } from './process.js';

/** Longest crun may take to report a pid (create, exec) or to pass an opened start gate. */
export const CRUN_WAIT_MS = 60_000;

/** Spawns crun as the monitor of `process`; its exit is settled and published by onProcessExit. */
export function spawnMonitored(
  context: GuestContext,
  container: Container,
  process: GuestProcess,
  args: string[],
): ChildProcess {
  return spawnCrun(
    context.paths.crun,
    args,
    process,
    { logger: context.logger, containerId: container.id },
    (status) => {
      void onProcessExit(context, container, process, status);
    },
  );
}

/** Runs a short crun command; throws Internal naming `step` unless it exits 0. */
export async function runCrun(
  paths: GuestPaths,
  step: string,
  args: string[],
  containerId: string,
): Promise<void> {
  const { code, output } = await runCommand(paths.crun, args);
  if (code !== 0) throw new Internal(step, output || `exit ${code}`, { containerId });
}

/** Signals `pid` (nothing for a pid never known); one already gone is not an error, others throw Internal. */
export function killPid(pid: number, signal: number | NodeJS.Signals): void {
  if (pid <= 0) return;
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH')
      throw new Internal('kill', (err as Error).message, { pid });
  }
}

/** The agent's terminal opener: each terminal gets its own console socket under the agent's state dir. */
export function terminalOpener(paths: GuestPaths, logger: Logger): GuestContext['openTerminal'] {
  let opened = 0;
  return async (container, process, size) => {
    // Short and flat: sun_path holds 107 bytes, container and exec ids up to 64 each would not fit.
    const socketPath = join(paths.stateDir, `tty-${++opened}.sock`);
    await openConsole(process, size, {
      socketPath,
      helperPath: paths.consoleHelper ?? 'sbx-console',
      containerId: container.id,
      logger,
    });
    return socketPath;
  };
}
