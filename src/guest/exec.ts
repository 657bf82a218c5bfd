// Running an extra process in a container (ExecProcess): its process.json from the container's spec, `crun exec`
// spawned as its monitor, its pid read back; exited execs kept, boundedly, for late waits and reads.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { WireProcessSpec } from '../agent/index.js';
import { AlreadyExists, Internal, InvalidArgument, InvalidState, Timeout } from '../errors/index.js';
import { sleep } from '../timing/index.js';
import { type Container, checkId, type GuestContext } from './container-record.js';
import { CRUN_WAIT_MS, spawnMonitored } from './crun.js';
import { execProcessOf } from './oci-spec.js';
import { GuestProcess } from './process.js';

/** Exited execs (status and buffered output) kept per container for late waits and reads. */
const MAX_EXITED_EXECS = 64;

/**
 * Starts `spec` as exec `execId` of a running container and resolves its pid (0 for one that ended before crun
 * reported it). Throws InvalidArgument, AlreadyExists (a running exec of that id), InvalidState, Internal (crun
 * exec failed before the program ran) or Timeout.
 */
export async function execProcess(
  context: GuestContext,
  container: Container,
  execId: string,
  spec: WireProcessSpec | null,
  outputCapacity: number,
): Promise<number> {
  const containerId = container.id;
  checkId('execId', execId);
  // An exited exec's id may be taken again: the host deleted its record (exec.delete) before asking.
  const earlier = container.execs.get(execId);
  if (earlier && !earlier.exit) throw new AlreadyExists('process', `${containerId}/${execId}`);
  if (earlier) container.execs.delete(execId);
  if (container.status !== 'running')
    throw new InvalidState('container', containerId, container.status, 'exec');
  if (!spec || spec.args.length === 0) throw new InvalidArgument('process.args', 'must not be empty');
  const processJson = await execProcessOf(container.spec, spec);
  const processFile = join(container.stateDir, `exec-${execId}.json`);
  const pidFile = join(container.stateDir, `exec-${execId}.pid`);
  await writeFile(processFile, JSON.stringify(processJson));
  const process = new GuestProcess(execId, outputCapacity);
  forgetOldExecs(container);
  container.execs.set(execId, process);
  let consoleSocket: string;
  try {
    consoleSocket = spec.terminal
      ? await context.openTerminal(container, process, processJson.consoleSize)
      : '';
  } catch (err) {
    container.execs.delete(execId);
    throw err;
  }
  spawnMonitored(context, container, process, [
    'exec',
    ...(consoleSocket ? ['--console-socket', consoleSocket] : []),
    '--process',
    processFile,
    '--pid-file',
    pidFile,
    containerId,
  ]);
  const deadline = Date.now() + CRUN_WAIT_MS;
  for (;;) {
    const text = await readFile(pidFile, 'utf8').catch(() => '');
    if (/^\d+/.test(text.trim())) {
      process.pid = Number.parseInt(text.trim(), 10);
      break;
    }
    if (process.exit) {
      if (process.exit.exitCode !== 0 && process.stdout.end === 0 && !process.notRun) {
        const output = process.stderr.readFrom(0).data.toString('utf8').trim();
        container.execs.delete(execId);
        throw new Internal('crun exec', output || `exited ${process.exit.exitCode}`, {
          containerId,
          execId,
        });
      }
      break;
    }
    if (Date.now() > deadline) throw new Timeout('crun exec', CRUN_WAIT_MS, { containerId, execId });
    await sleep(10);
  }
  process.announce();
  return process.pid;
}

/** Bounds memory in long-lived containers (health checks exec forever): only the newest exited execs are kept. */
function forgetOldExecs(container: Container): void {
  const exited = [...container.execs.values()].filter((process) => process.exit);
  for (const process of exited.slice(0, Math.max(0, exited.length - MAX_EXITED_EXECS + 1))) {
    container.execs.delete(process.execId);
  }
}
