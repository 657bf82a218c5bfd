// Commands on execs (processes beside a container's init) and on any process's stdio.
import type { Observable } from 'rxjs';
import type { ExitStatus, ProcessSpec } from '../../agent/index.js';
import { AlreadyExists, ConcurrencyConflict, InvalidState } from '../../errors/index.js';
import { initialSnapshot } from '../../machines/index.js';
import { type ContainerActor, ExecActor, lifeKey, type SandboxActor } from '../entity.js';
import type { Kernel } from '../kernel.js';
import type { ExecView } from '../types.js';
import { execView } from '../views.js';
import { commandAndWait, inTurn, lifeData, settledAs } from './common.js';
import { decide } from './decide.js';

/**
 * Starts a process in a running container: a new exec with `process`, or (no process) the exec registered
 * before by createExec. Resolves once it runs (or already exited).
 */
export async function startExec(
  k: Kernel,
  sandboxId: string,
  containerId: string,
  execId: string,
  process?: ProcessSpec,
): Promise<ExecView> {
  const by = k.open('exec.start');
  const c = k.containerEntry(sandboxId, containerId);
  if (process !== undefined) return newExec(k, c, execId, 'ExecRequested', process, by);
  const registered = k.execEntry(sandboxId, containerId, execId);
  await inTurn(c, async () => undefined);
  decide('exec.start', { sandbox: c.sandbox, container: c });
  await commandAndWait(
    k,
    registered,
    'start',
    { type: 'ExecStartRequested', data: {}, correlationId: by },
    ['starting'],
    ['running', 'exited'],
  );
  return execView(registered);
}

/** Registers an exec in a running container without starting it (containerd's Exec before its Start). */
export async function createExec(
  k: Kernel,
  sandboxId: string,
  containerId: string,
  execId: string,
  process: ProcessSpec,
): Promise<ExecView> {
  const by = k.open('exec.create');
  return newExec(k, k.containerEntry(sandboxId, containerId), execId, 'ExecCreated', process, by);
}

/** Removes an exec's record once it is no longer running (exited, failed, or never started): its id is free again. */
export async function deleteExec(k: Kernel, sandboxId: string, containerId: string, execId: string) {
  const by = k.open('exec.delete');
  const e = k.execEntry(sandboxId, containerId, execId);
  await e.admit(() =>
    k.record(e, { type: 'ExecDeleted', data: {}, correlationId: by }, { command: 'delete' }),
  );
}

function newExec(
  k: Kernel,
  c: ContainerActor,
  execId: string,
  type: 'ExecRequested' | 'ExecCreated',
  process: ProcessSpec,
  by: string,
): Promise<ExecView> {
  const sandboxId = c.sandbox.id;
  const containerId = c.id;
  if (c.execs.has(execId)) throw new AlreadyExists('exec', execId, { sandboxId, containerId });
  const key = lifeKey.exec(sandboxId, c.sandbox.incarnation, containerId, c.incarnation, execId);
  const incarnation = k.lives.next(key);
  // The id is taken now; commands for it wait until this start completed or failed (its whole turn).
  const e = new ExecActor(c, execId, initialSnapshot('exec'), incarnation);
  c.execs.set(execId, e);
  return e.admit(async () => {
    try {
      // The container's own earlier commands go first, and a start of it among them ends first (without
      // holding the container's turn meanwhile: a forced delete of it still goes ahead).
      await inTurn(c, async () => undefined);
      await c.settled((state) => state !== 'starting' && state !== 'resuming');
      decide('exec.start', { sandbox: c.sandbox, container: c });
      e.lastError = undefined;
      const data = {
        sandboxId,
        containerId,
        execId,
        ...lifeData(incarnation),
        ...(c.sandbox.incarnation > 1 ? { sandboxIncarnation: c.sandbox.incarnation } : {}),
        ...(c.incarnation > 1 ? { containerIncarnation: c.incarnation } : {}),
        process,
      };
      await k.record(
        e,
        { type, data, correlationId: by },
        { command: type === 'ExecCreated' ? 'exec create' : 'exec' },
      );
      if (type === 'ExecRequested') await settledAs(e, 'exec', ['starting'], ['running', 'exited']);
    } catch (err) {
      if (e.state === 'absent') c.execs.delete(execId);
      if (err instanceof ConcurrencyConflict)
        throw new AlreadyExists('exec', execId, { sandboxId, containerId });
      throw err;
    } finally {
      if (e.version > 0) k.lives.note(key, incarnation);
    }
    return execView(e);
  });
}

export async function waitExec(
  k: Kernel,
  sandboxId: string,
  containerId: string,
  execId: string,
): Promise<ExitStatus> {
  const entry = k.execEntry(sandboxId, containerId, execId);
  const e = await entry.admit(async () => k.exec(sandboxId, containerId, execId));
  await e.settled(() => e.is('ended'));
  const exit = e.context.exit;
  if (!exit) throw new InvalidState('exec', execId, e.state, 'wait (it never ran)');
  return exit;
}

export async function killExec(
  k: Kernel,
  sandboxId: string,
  containerId: string,
  execId: string,
  signal: string,
): Promise<void> {
  k.open('exec.kill');
  const e = k.execEntry(sandboxId, containerId, execId);
  await inTurn(e, async () => {
    decide('exec.kill', { sandbox: e.container.sandbox, exec: e }, `kill ${signal}`);
    await k.call(k.agent.signalProcess(sandboxId, containerId, execId, signal, false), 'signalProcess');
  });
}

/** execId '' names the container's init; either way the sandbox is returned. */
function processOwner(k: Kernel, sandboxId: string, containerId: string, execId: string): SandboxActor {
  if (execId === '') return k.container(sandboxId, containerId).sandbox;
  return k.exec(sandboxId, containerId, execId).container.sandbox;
}

export async function resizeExec(
  k: Kernel,
  sandboxId: string,
  containerId: string,
  execId: string,
  rows: number,
  cols: number,
): Promise<void> {
  decide('exec.resize', { sandbox: processOwner(k, sandboxId, containerId, execId) });
  await k.call(k.agent.ttyWinResize(sandboxId, containerId, execId, rows, cols), 'ttyWinResize');
}

export function output(
  k: Kernel,
  sandboxId: string,
  containerId: string,
  execId: string,
  stream: 'stdout' | 'stderr',
): Observable<Uint8Array> {
  processOwner(k, sandboxId, containerId, execId);
  return stream === 'stdout'
    ? k.agent.readStdout(sandboxId, containerId, execId)
    : k.agent.readStderr(sandboxId, containerId, execId);
}

export async function writeStdin(
  k: Kernel,
  sandboxId: string,
  containerId: string,
  execId: string,
  data: Uint8Array,
): Promise<number> {
  decide('exec.stdin', { sandbox: processOwner(k, sandboxId, containerId, execId) }, 'stdin');
  return k.call(k.agent.writeStdin(sandboxId, containerId, execId, data), 'writeStdin');
}

export async function closeStdin(k: Kernel, sandboxId: string, containerId: string, execId: string) {
  decide('exec.stdin', { sandbox: processOwner(k, sandboxId, containerId, execId) }, 'stdin close');
  await k.call(k.agent.closeStdin(sandboxId, containerId, execId), 'closeStdin');
}
