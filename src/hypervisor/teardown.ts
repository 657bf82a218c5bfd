// Ending a QEMU: the stop escalation (ACPI powerdown, quit, SIGKILL), the kill, the state dir's removal.
import { rm } from 'node:fs/promises';
import { HypervisorError } from '../errors/index.js';
import type { VmPaths } from './cmdline.js';
import { waitExitStatus } from './exit-status.js';
import { signalProcess, waitForExit } from './proc.js';
import type { QemuVm } from './qemu-vm.js';
import { qemuPidOfStateDir } from './vm-files.js';

/** How long a graceful powerdown may take by default before `quit`. */
export const DEFAULT_STOP_TIMEOUT_MS = 5_000;
const QUIT_GRACE_MS = 3_000;
const KILL_GRACE_MS = 5_000;

/** SIGKILLs `pid`; true once it is gone, false when it still runs KILL_GRACE_MS later. */
export async function killQemu(pid: number, startTime: number | undefined): Promise<boolean> {
  signalProcess(pid, 'SIGKILL');
  return waitForExit(pid, startTime, KILL_GRACE_MS);
}

/**
 * Ends the VM's QEMU: ACPI powerdown for `timeoutMs` when `running` (a paused guest cannot see the button),
 * then QMP `quit`, then SIGKILL. Resolves once the process is gone; throws HypervisorError if SIGKILL fails.
 */
export async function stopQemu(vm: QemuVm, running: boolean, timeoutMs: number): Promise<void> {
  const { sandboxId, pid, pidStartTime } = vm.handle;
  const gone = (ms: number): Promise<boolean> => waitForExit(pid, pidStartTime, ms);
  // vm.qmp is read again after each wait: the monitor drops it when it sees the process go.
  if (running && timeoutMs > 0 && vm.qmp) {
    await vm.qmp.execute('system_powerdown').catch(() => undefined);
    if (await gone(timeoutMs)) return;
  }
  if (vm.qmp) {
    vm.logger.info({ step: 'stop', pid }, 'powerdown did not end the VM: quit');
    await vm.qmp.execute('quit', undefined, { timeoutMs: QUIT_GRACE_MS }).catch(() => undefined);
    if (await gone(QUIT_GRACE_MS)) return;
  }
  vm.logger.warn({ step: 'stop', pid }, 'quit did not end the VM: SIGKILL');
  if (await killQemu(pid, pidStartTime)) return;
  throw new HypervisorError('stop', `QEMU pid ${pid} survived SIGKILL`, { sandboxId, pid });
}

/**
 * Removes a VM's state dir once the process this instance knew is gone. A QEMU still serving the dir (one
 * never attached, e.g. after a restart) is killed first; its pidfile is trusted only if that process is a
 * QEMU naming this very dir. Throws HypervisorError if it survives SIGKILL.
 */
export async function removeVmState(
  paths: VmPaths,
  sandboxId: string,
  reaperBinary: string | undefined,
): Promise<void> {
  const orphan = await qemuPidOfStateDir(paths);
  if (orphan !== undefined && !(await killQemu(orphan, undefined))) {
    throw new HypervisorError('destroy', `QEMU pid ${orphan} survived SIGKILL`, { sandboxId });
  }
  if (reaperBinary) await waitExitStatus(paths.exitStatus, 500);
  await removeStateDir(paths.stateDir);
}

/** Removes a state dir, retried: a reaper may still be writing QEMU's exit status into it as it goes. */
export async function removeStateDir(stateDir: string): Promise<void> {
  await rm(stateDir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
}
