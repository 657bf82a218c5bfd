// Starting a keeper (src/oci/keeper.c): the host process that stands for one process in a VM (docs/oci-cli.md).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { RuncError } from './errors.js';

/** The keeper binary: built by scripts/setup.sh into dist/bin (SANDBOXD_RUNC_KEEPER overrides). */
export function keeperPath(): string {
  return (
    process.env.SANDBOXD_RUNC_KEEPER ??
    fileURLToPath(new URL('../../bin/sandboxd-runc-keeper', import.meta.url))
  );
}

export interface KeeperOptions {
  readonly socket: string;
  readonly sandboxId: string;
  readonly containerId: string;
  /** An exec's id; absent: the container's init. */
  readonly execId?: string;
  readonly consoleSocket?: string;
  /** Forget the exec once it ended (runc has no exec delete for its callers to call). */
  readonly deleteExec?: boolean;
  /** Outlives this CLI (create, exec --detach): its own session, not waited on here. */
  readonly detached: boolean;
}

/**
 * Spawns a keeper with this process's stdin/stdout/stderr and resolves once it follows the process's output
 * (so nothing the process writes is missed), or rejects with what it said.
 */
export function spawnKeeper(o: KeeperOptions): Promise<ChildProcess> {
  const path = keeperPath();
  if (!existsSync(path)) {
    return Promise.reject(
      new RuncError(
        'Internal',
        `keeper ${path} is not built: run scripts/setup.sh (it needs gcc and libc6-dev)`,
      ),
    );
  }
  const args = [
    '--socket',
    o.socket,
    '--sandbox',
    o.sandboxId,
    '--container',
    o.containerId,
    '--ready-fd',
    '3',
  ];
  if (o.execId) args.push('--exec', o.execId);
  if (o.consoleSocket) args.push('--console-socket', o.consoleSocket);
  if (o.deleteExec) args.push('--delete-exec');
  const child = spawn(path, args, { stdio: ['inherit', 'inherit', 'inherit', 'pipe'], detached: o.detached });
  return new Promise((resolve, reject) => {
    let said = '';
    const ready = child.stdio[3];
    const fail = (why: string) => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      reject(new RuncError('Internal', `keeper: ${why}`));
    };
    child.once('error', (err) => fail(err.message));
    child.once('exit', (code, signal) => fail(said.trim() || `exited ${code ?? signal} before it was ready`));
    ready?.on('data', (d: Buffer) => {
      said += d.toString();
      if (!said.includes('\n')) return;
      child.removeAllListeners('exit');
      ready.destroy();
      if (said.startsWith('ok')) resolve(child);
      else fail(said.replace(/^error: /, '').trim());
    });
  });
}

/** Waits for a keeper this process started to end; resolves with the exit code it passes on. */
export function keeperExit(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    if (child.signalCode !== null) return resolve(128 + signalNumber(child.signalCode));
    child.once('exit', (code, signal) => resolve(code ?? 128 + signalNumber(signal ?? 'SIGKILL')));
  });
}

function signalNumber(name: string): number {
  return (constants.signals as unknown as Record<string, number>)[name] ?? 9;
}
