// Pinning a VM's threads to host CPUs (sched_setaffinity on every thread of QEMU, through util-linux's taskset,
// since Node has no binding): how a container's cpuset reaches the host, the sandbox-level cpuset Kata applies.
// New vCPU threads (hotplug) are made by QEMU's pinned threads, so they inherit the mask.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { HypervisorError } from '../errors/index.js';

const run = promisify(execFile);

/** The host's online CPUs (or memory nodes), as the kernel lists them ("0-3"). */
export async function hostOnline(what: 'cpu' | 'node'): Promise<string> {
  return (await readFile(`/sys/devices/system/${what}/online`, 'utf8')).trim();
}

/** Sets the CPU affinity of every thread of `pid` to `cpus` ("" or undefined: all online host CPUs). */
export async function pinProcess(pid: number, cpus: string | undefined): Promise<string> {
  const list = cpus || (await hostOnline('cpu'));
  try {
    await run('taskset', ['--all-tasks', '--cpu-list', '--pid', list, String(pid)], { timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new HypervisorError('pin vcpus', (e.stderr || e.message).trim(), { pid, cpus: list });
  }
  return list;
}

/** The CPU affinity of `pid`'s main thread ("0-3"), as taskset reports it. */
export async function affinityOf(pid: number): Promise<string> {
  const { stdout } = await run('taskset', ['--cpu-list', '--pid', String(pid)], { timeout: 10_000 });
  return stdout.trim().split(':').pop()?.trim() ?? '';
}
