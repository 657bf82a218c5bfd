// Getting a QMP session on a VM's QEMU: a new one started daemonized (or all it left cleaned up), or one that runs already.
import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import { AlreadyExists, HypervisorError, SandboxdError } from '../errors/index.js';
import { qemuArgs, type VmPaths, vmPaths } from './cmdline.js';
import { waitExitStatus } from './exit-status.js';
import { isProcessAlive, readProcStat } from './proc.js';
import { QmpClient } from './qmp.js';
import { spawnDaemonizedQemu } from './spawn.js';
import { killQemu, removeStateDir } from './teardown.js';
import type { Accel, VmConfig, VmHandle } from './types.js';
import {
  checkVmInputs,
  exists,
  qemuPidOfStateDir,
  readPidFile,
  readTail,
  removeVmFiles,
} from './vm-files.js';

export interface QemuLaunch {
  readonly qemuBinary: string;
  /** sandboxd-qemu-reaper, or undefined to run QEMU without it. */
  readonly reaperBinary: string | undefined;
  /** Deadline for QEMU to daemonize and QMP to answer. */
  readonly timeoutMs: number;
  readonly accel: Accel;
  readonly logger: Logger;
}

export interface StartedQemu {
  readonly handle: VmHandle;
  readonly paths: VmPaths;
  readonly qmp: QmpClient;
}

/**
 * Starts the VM's QEMU detached and connects to its QMP socket. Throws AlreadyExists when a QEMU already
 * serves the state dir, InvalidArgument for a missing input, HypervisorError (or Timeout) naming the failed
 * step otherwise; on any failure, `signal` included, the process is killed and what the launch made is removed.
 */
export async function startQemu(
  config: VmConfig,
  launch: QemuLaunch,
  signal: AbortSignal | undefined,
): Promise<StartedQemu> {
  const { accel, logger } = launch;
  const args = qemuArgs(config, accel);
  const paths = vmPaths(config.stateDir);
  await checkVmInputs(config);
  const createdDir = !(await exists(paths.stateDir));
  if (!createdDir && (await qemuPidOfStateDir(paths)) !== undefined) {
    throw new AlreadyExists('vm', config.sandboxId, { stateDir: paths.stateDir });
  }
  await mkdir(paths.stateDir, { recursive: true, mode: 0o700 });
  await removeVmFiles(paths);
  const started = Date.now();
  let pid: number | undefined;
  let qmp: QmpClient | undefined;
  try {
    throwIfAborted(signal, 'qemu start');
    await spawnDaemonizedQemu({
      qemuBinary: launch.qemuBinary,
      reaperBinary: launch.reaperBinary,
      timeoutMs: launch.timeoutMs,
      args,
      paths,
      signal,
      netns: config.network?.mode === 'netns' ? config.network.path : undefined,
    });
    pid = await readPidFile(paths.pidFile);
    const procStat = await readProcStat(pid);
    if (!procStat) throw new HypervisorError('qemu start', 'QEMU exited right after starting', { pid });
    const remaining = Math.max(1_000, launch.timeoutMs - (Date.now() - started));
    qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs: remaining, ...(signal ? { signal } : {}) });
    throwIfAborted(signal, 'qmp connect');
    const handle: VmHandle = {
      sandboxId: config.sandboxId,
      pid,
      pidStartTime: procStat.startTime,
      accel,
      stateDir: paths.stateDir,
      qmpSocket: paths.qmpSocket,
      agentSocket: paths.agentSocket,
      outputSocket: paths.outputSocket,
      consoleLog: paths.consoleLog,
    };
    logger.info({ step: 'launch', pid, accel, ms: Date.now() - started }, 'VM launched');
    return { handle, paths, qmp };
  } catch (err) {
    qmp?.close();
    const consoleTail = await readTail(paths.consoleLog);
    if (pid === undefined) pid = await readPidFile(paths.pidFile).catch(() => undefined);
    if (pid !== undefined) {
      await killQemu(pid, undefined);
      // Its reaper writes the exit status as it goes: let it, then remove that too.
      if (launch.reaperBinary) await waitExitStatus(paths.exitStatus, 500);
    }
    if (createdDir) await removeStateDir(paths.stateDir);
    else await removeVmFiles(paths);
    logger.warn({ step: 'launch', err, consoleTail }, 'VM launch failed; cleaned up');
    if (err instanceof SandboxdError) throw err;
    throw new HypervisorError('launch', errorMessage(err), { sandboxId: config.sandboxId, consoleTail }, err);
  }
}

/**
 * A QMP session on a QEMU that runs already (after a daemon restart); undefined when it is gone or its pid
 * was reused. Throws HypervisorError when it runs but QMP does not answer: not "gone", the caller decides
 * (destroy is the last resort).
 */
export async function dialRunningQemu(handle: VmHandle, logger: Logger): Promise<QmpClient | undefined> {
  if (!(await isProcessAlive(handle.pid, handle.pidStartTime))) {
    logger.info({ step: 'attach', pid: handle.pid }, 'VM is gone (or its pid was reused)');
    return undefined;
  }
  try {
    const qmp = await QmpClient.connect(handle.qmpSocket, { timeoutMs: 5_000 });
    await qmp.execute('query-status', undefined, { timeoutMs: 5_000 });
    return qmp;
  } catch (err) {
    if (!(await isProcessAlive(handle.pid, handle.pidStartTime))) return undefined;
    throw new HypervisorError(
      'attach',
      `QEMU pid ${handle.pid} runs but QMP does not answer`,
      {
        sandboxId: handle.sandboxId,
        pid: handle.pid,
      },
      err,
    );
  }
}

function throwIfAborted(signal: AbortSignal | undefined, step: string): void {
  if (signal?.aborted) throw new HypervisorError(step, 'aborted');
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
