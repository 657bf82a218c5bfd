// The Agent port's RPCs on processes (a container's init or an exec): start, signal, wait, stdin, tty, output.
import type { Observable } from 'rxjs';
import { AgentError, Timeout } from '../errors/index.js';
import { sleep } from '../timing/index.js';
import type { AgentConnections } from './connection.js';
import { toExit, toWireProcess } from './convert.js';
import { followOutput, readOutputOnce } from './output.js';
import type { AgentOutputChunk, ExecRequest, ExitStatus } from './types.js';

/** How long one WaitProcess long poll lasts before it is renewed (each call still has a deadline). */
const WAIT_POLL_MS = 60_000;

export async function execProcess(
  connections: AgentConnections,
  sandboxId: string,
  request: ExecRequest,
): Promise<{ pid: number }> {
  const answer = await connections.unary(
    sandboxId,
    'ExecProcess',
    { containerId: request.containerId, execId: request.execId, process: toWireProcess(request.process) },
    Math.max(connections.callDeadlineMs, 90_000),
  );
  return { pid: answer.pid };
}

export async function signalProcess(
  connections: AgentConnections,
  sandboxId: string,
  containerId: string,
  execId: string,
  signal: string,
  all?: boolean,
): Promise<void> {
  await connections.unary(sandboxId, 'SignalProcess', { containerId, execId, signal, all: all ?? false });
}

/** Long polls in renewed calls (each with a deadline) and rides out reconnects until the process exits. */
export async function waitProcess(
  connections: AgentConnections,
  sandboxId: string,
  containerId: string,
  execId: string,
): Promise<ExitStatus> {
  for (;;) {
    try {
      const answer = await connections.unary(sandboxId, 'WaitProcess', { containerId, execId }, WAIT_POLL_MS);
      if (answer.status) return toExit(answer.status);
    } catch (err) {
      const retriable = err instanceof Timeout || (err instanceof AgentError && connections.has(sandboxId));
      if (!retriable) throw err;
      await sleep(300);
    }
  }
}

export async function writeStdin(
  connections: AgentConnections,
  sandboxId: string,
  containerId: string,
  execId: string,
  data: Uint8Array,
): Promise<number> {
  const answer = await connections.unary(sandboxId, 'WriteStdin', {
    containerId,
    execId,
    data: Buffer.from(data),
  });
  return answer.length;
}

export async function closeStdin(
  connections: AgentConnections,
  sandboxId: string,
  containerId: string,
  execId: string,
): Promise<void> {
  await connections.unary(sandboxId, 'CloseStdin', { containerId, execId });
}

export async function ttyWinResize(
  connections: AgentConnections,
  sandboxId: string,
  containerId: string,
  execId: string,
  rows: number,
  cols: number,
): Promise<void> {
  await connections.unary(sandboxId, 'TtyWinResize', { containerId, execId, rows, cols });
}

/**
 * One output stream of a process from byte `from` (or the oldest the agent still buffers), over the output port
 * when the VM has one, else in the gRPC stream; it resumes after a transient failure while the sandbox is connected.
 */
export function readOutput(
  connections: AgentConnections,
  sandboxId: string,
  rpc: 'ReadStdout' | 'ReadStderr',
  containerId: string,
  execId: string,
  from: number,
): Observable<AgentOutputChunk> {
  return followOutput(rpc, sandboxId, from, (offset, sink) => {
    const connection = connections.get(sandboxId);
    if (!connection) return undefined;
    return readOutputOnce(
      rpc,
      sandboxId,
      connection.outputPort,
      (port) =>
        connections.stream(connection, rpc, {
          containerId,
          execId,
          offset,
          ...(port ? { outputPortToken: port.token, portSubscription: port.subscription } : {}),
        }),
      sink,
    );
  });
}
