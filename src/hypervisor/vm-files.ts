// The files of one VM's state dir, and the inputs a launch needs.
import { readFile, rm, stat } from 'node:fs/promises';
import { HypervisorError, InvalidArgument } from '../errors/index.js';
import type { VmPaths } from './cmdline.js';
import { isProcessAlive, readCmdline } from './proc.js';
import type { VmConfig } from './types.js';

/** Fails early, before anything is created, when an input path is missing. */
export async function checkVmInputs(config: VmConfig): Promise<void> {
  const inputs: [string, string][] = [
    ['image.kernel', config.image.kernel],
    ['image.initrd', config.image.initrd],
    config.image.rootImage === undefined
      ? ['image.rootDir', config.image.rootDir]
      : ['image.rootImage', config.image.rootImage],
    ['sharedDir', config.sharedDir],
  ];
  for (const [field, path] of inputs) {
    if (!(await exists(path))) throw new InvalidArgument(field, `${path} does not exist`);
  }
}

export async function readPidFile(path: string): Promise<number> {
  const text = await readFile(path, 'utf8');
  const pid = Number.parseInt(text.trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) throw new HypervisorError('read pidfile', `bad pidfile ${path}`);
  return pid;
}

/** The pid in the state dir's pidfile when it is a live QEMU whose command line names this state dir. */
export async function qemuPidOfStateDir(paths: VmPaths): Promise<number | undefined> {
  const pid = await readPidFile(paths.pidFile).catch(() => undefined);
  if (pid === undefined || !(await isProcessAlive(pid))) return undefined;
  const cmdline = await readCmdline(pid);
  return cmdline?.includes(paths.pidFile) ? pid : undefined;
}

export async function removeVmFiles(paths: VmPaths): Promise<void> {
  const stale = [
    paths.qmpSocket,
    paths.agentSocket,
    paths.outputSocket,
    paths.pidFile,
    paths.consoleLog,
    paths.exitStatus,
  ];
  for (const file of [...stale, `${paths.exitStatus}.tmp`]) {
    await rm(file, { force: true });
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function readTail(path: string, bytes = 2048): Promise<string | undefined> {
  try {
    const text = await readFile(path, 'utf8');
    return text.slice(-bytes);
  } catch {
    return undefined;
  }
}
