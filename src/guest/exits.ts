// How a guest process's end is told: crun's exit turned into the process's status (not run, OOM-killed), the
// container stopped, and the exit published once its start RPC has answered; OOM kills published as they happen.
import { sleep } from '../timing/index.js';
import { oomKills, watchMemoryEvents } from './cgroup.js';
import { type Container, closeGate, type GuestContext } from './container-record.js';
import type { GuestExitStatus } from './events.js';
import { notRunExitCode } from './oci-spec.js';
import { CONSOLE_DRAIN_MS, type GuestProcess } from './process.js';

/** Longest an exit event waits for its start RPC to answer (a created container that died on its own). */
const ANNOUNCE_WAIT_MS = 30_000;

/** Settles `process` with the status crun's exit means and publishes it (processExited); never throws. */
export async function onProcessExit(
  context: GuestContext,
  container: Container,
  process: GuestProcess,
  status: GuestExitStatus,
): Promise<void> {
  let final = status;
  // crun fails (1 for run, its own code for exec) both for a program that failed and for one it could not
  // execute: its message tells them apart.
  if (status.exitCode !== 0 && status.signal === '') {
    await Promise.race([process.closed, sleep(CONSOLE_DRAIN_MS)]);
    const said = process.stderr.readFrom(Math.max(0, process.stderr.end - 4096)).data.toString('utf8');
    const code = notRunExitCode(said);
    if (code !== undefined) {
      process.notRun = true;
      final = { exitCode: code, signal: '', oomKilled: false };
    }
  }
  if (process.execId === '') {
    const kills = await checkOom(context, container);
    if (kills > 0 && status.signal === 'SIGKILL') final = { ...status, oomKilled: true };
    container.status = 'stopped';
    container.stopWatching?.();
    container.stopWatching = undefined;
    closeGate(container);
  }
  process.stdin = undefined;
  context.timings.record(process);
  process.settle(final);
  context.logger.info({ containerId: container.id, execId: process.execId, ...final }, 'process exited');
  // A create or exec that failed before its process existed is reported by its RPC's error, not as an exit.
  if (process.pid <= 0 && (process.execId === '' || !container.execs.has(process.execId))) return;
  // The exit is told after the RPC that started the process has answered (a fast `echo` ends before ExecProcess
  // returns): hosts see started, then exited. setImmediate lets the answer reach the HTTP/2 session first.
  await Promise.race([process.announced, sleep(ANNOUNCE_WAIT_MS)]);
  await new Promise((resolve) => setImmediate(resolve));
  context.events.publish({
    type: 'processExited',
    containerId: container.id,
    execId: process.execId,
    status: final,
  });
}

/** Publishes an OOM event for every kill not reported yet; returns the total count. */
async function checkOom(context: GuestContext, container: Container): Promise<number> {
  const kills = await oomKills(container.cgroupDir);
  if (kills > container.oomSeen) {
    container.oomSeen = kills;
    context.logger.warn({ containerId: container.id, oomKills: kills }, 'OOM kill in container');
    context.events.publish({ type: 'oom', containerId: container.id });
  }
  return kills;
}

/** Publishes OOM kills in `container` as its cgroup reports them, until container.stopWatching is called. */
export function watchOom(context: GuestContext, container: Container): void {
  container.stopWatching = watchMemoryEvents(container.cgroupDir, () => void checkOom(context, container));
}
