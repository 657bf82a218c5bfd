// Starting QEMU with -daemonize (under the reaper, inside a network namespace when asked).
import { spawn } from 'node:child_process';
import { HypervisorError, Timeout } from '../errors/index.js';
import type { VmPaths } from './cmdline.js';

export interface DaemonizedLaunch {
  readonly qemuBinary: string;
  /** sandboxd-qemu-reaper, or undefined to spawn QEMU directly. */
  readonly reaperBinary: string | undefined;
  /** How long QEMU's first process may take to set the VM up and exit. */
  readonly timeoutMs: number;
  readonly args: string[];
  readonly paths: VmPaths;
  readonly signal: AbortSignal | undefined;
  /** A network namespace path: QEMU is started in it (nsenter execs it), so it opens the taps there. */
  readonly netns: string | undefined;
}

/**
 * Runs QEMU with -daemonize: the first process exits once the VM is set up, with errors on stderr. With
 * `netns`, QEMU is started inside that network namespace (nsenter execs it), so it opens the taps there.
 */
export function spawnDaemonizedQemu(launch: DaemonizedLaunch): Promise<void> {
  const { qemuBinary, reaperBinary, timeoutMs, args, paths, signal, netns } = launch;
  const [qemu, qemuArgv] = netns ? ['nsenter', [`--net=${netns}`, qemuBinary, ...args]] : [qemuBinary, args];
  // The reaper becomes the daemonized QEMU's parent (a subreaper) and exits as QEMU's first process does.
  const [bin, argv] = reaperBinary ? [reaperBinary, [paths.exitStatus, qemu, ...qemuArgv]] : [qemu, qemuArgv];
  return new Promise((resolve, reject) => {
    // detached: its own session from the start, so no signal aimed at our group reaches it.
    const child = spawn(bin, argv, {
      cwd: paths.stateDir,
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 8192) stderr += chunk;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Timeout('qemu start', timeoutMs));
    }, timeoutMs);
    const onAbort = (): void => {
      child.kill('SIGKILL');
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      reject(new HypervisorError('qemu start', err.message, { binary: qemuBinary }, err));
    });
    // 'exit' (not 'close'): the daemonized grandchild holds our stderr pipe until it has set up.
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (code === 0) {
        resolve();
        return;
      }
      // Give stderr a moment to drain: it carries QEMU's reason.
      setTimeout(() => {
        const message = stderr.trim() || `exited with ${code ?? sig}`;
        reject(new HypervisorError('qemu start', message, { exitCode: code, signal: sig }));
      }, 50);
    });
  });
}
