// Attaching to a process from the CLI: following its output, and `sandboxctl exec run` (docker exec -it).
import { customAlphabet } from 'nanoid';
import type { ApiClient, Notification } from '../api/index.js';
import { catchInterrupts, signalExitCode } from './interrupts.js';

export interface ProcessRef {
  readonly sandboxId: string;
  readonly containerId: string;
  /** '' = the container's init process. */
  readonly execId: string;
}

export interface OutputFollower {
  /** Resolves when both streams have ended (or the connection closed). */
  readonly ended: Promise<void>;
  /** Stops writing and listening (the daemon ends the subscription with the connection). */
  stop(): void;
}

/**
 * Subscribes to a process's stdout and stderr (from their first byte) and copies them to this process's
 * stdout and stderr. Resolves once subscribed, so a caller can start the process after and miss nothing.
 */
export async function followOutput(client: ApiClient, ref: ProcessRef): Promise<OutputFollower> {
  let subscription: string | undefined;
  let ended = 0;
  let endAll: () => void = () => undefined;
  const endedAll = new Promise<void>((resolve) => {
    endAll = resolve;
  });
  const early: Notification[] = [];
  const handle = (n: Notification) => {
    if (n.params.subscription !== subscription) return;
    if (n.method === 'exec.output') {
      const data = Buffer.from(String(n.params.data), 'base64');
      (n.params.stream === 'stderr' ? process.stderr : process.stdout).write(data);
    } else if (n.method === 'exec.outputEnd' && ++ended === 2) endAll();
  };
  // Listen before subscribing: the first chunks may arrive with the subscribe answer.
  const off = client.onNotification((n) => (subscription === undefined ? early.push(n) : handle(n)));
  client.onClose(() => endAll());
  try {
    const answer = await client.call<{ subscription: string }>('exec.output', { ...ref, follow: true });
    subscription = answer.subscription;
  } catch (err) {
    off();
    throw err;
  }
  for (const n of early.splice(0)) handle(n);
  return { ended: endedAll, stop: off };
}

/** How long output may trail a process's exit before we stop waiting for it. */
const outputGraceMs = 5000;
/** Bytes per exec.writeStdin call: base64 of it stays well under the API's 1 MiB message limit. */
const stdinChunkBytes = 256 * 1024;

const shortId = customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', 8);

export interface ExecRunOptions {
  readonly execId?: string;
  /** Copy this process's stdin to the process's (and close it at end of input). */
  readonly interactive?: boolean;
  /** Run the process on a terminal sized like ours; with `interactive` and a terminal here, raw mode. */
  readonly tty?: boolean;
  readonly env?: readonly string[];
  readonly cwd?: string;
  readonly user?: string;
  readonly json: boolean;
}

interface ExitStatus {
  exitCode: number;
  signal?: string;
  oomKilled?: boolean;
}

/** The exec.start process for `cmd` from the CLI's --env / --cwd / --user / -t. */
export function processOf(
  cmd: readonly string[],
  o: { env?: readonly string[]; cwd?: string; user?: string; tty?: boolean },
) {
  return {
    args: cmd,
    ...(o.env ? { env: o.env } : {}),
    ...(o.cwd ? { cwd: o.cwd } : {}),
    ...(o.user ? { user: o.user } : {}),
    ...(o.tty ? { terminal: true } : {}),
  };
}

/** How long a process may take to end after a signal we forwarded, before it is SIGKILLed. */
const signalGraceMs = 3000;

/**
 * Starts `cmd` in a running container and stays attached: output copied here, stdin copied there (-i),
 * window size followed (-t). SIGINT/SIGTERM/SIGHUP are forwarded to the process; one that does not end it
 * within a grace (or a second signal) is followed by SIGKILL, so a signal always ends the command. Resolves
 * with the process's exit code (128+signal when we had to kill it, as docker exits).
 */
export async function execRun(
  client: ApiClient,
  target: { sandboxId: string; containerId: string },
  cmd: readonly string[],
  o: ExecRunOptions,
): Promise<number> {
  const ref: ProcessRef = { ...target, execId: o.execId ?? `exec-${shortId()}` };
  const size = o.tty === true ? terminalSize() : undefined;
  const interrupts = catchInterrupts();
  let started = false;
  let killed = false;
  const kill = (signal: string) => client.call('exec.kill', { ...ref, signal }).catch(() => undefined);
  const escalate = () => {
    killed = true;
    void kill('SIGKILL');
  };
  interrupts.onSignal((signal, count) => {
    if (!started) return;
    if (count > 1 || signal === 'SIGHUP') return escalate();
    void kill(signal);
    setTimeout(escalate, signalGraceMs).unref();
  });
  let output: OutputFollower | undefined;
  let stopResizing: (() => void) | undefined;
  let stdin: { stop(): void } | undefined;
  try {
    // Awaited even if a signal comes meanwhile: a process that started must be ended, not left behind.
    await client.call('exec.start', {
      ...ref,
      process: { ...processOf(cmd, o), ...(size ? { consoleSize: size } : {}) },
    });
    started = true;
    if (interrupts.received) escalate();
    output = await followOutput(client, ref);
    stopResizing = size ? followWindowSize(client, ref) : undefined;
    stdin = o.interactive ? copyStdin(client, ref, o.tty === true) : undefined;
    const status = await client.call<ExitStatus>('exec.wait', ref);
    await Promise.race([output.ended, new Promise((r) => setTimeout(r, outputGraceMs).unref())]);
    if (status.oomKilled) process.stderr.write('sandboxctl: the process was OOM-killed\n');
    if (o.json) process.stdout.write(`${JSON.stringify({ ...ref, ...status })}\n`);
    return killed && interrupts.received ? signalExitCode(interrupts.received) : status.exitCode;
  } finally {
    output?.stop();
    stdin?.stop();
    stopResizing?.();
    interrupts.dispose();
  }
}

/**
 * Our terminal's size for a process's console, or nothing when it reports 0×0 (script(1), some CI and ssh
 * ptys): the runtime spec refuses a zero size, and the guest's default then applies.
 */
export function terminalSize(): { height: number; width: number } | undefined {
  const { rows, columns, isTTY } = process.stdout;
  return isTTY && rows > 0 && columns > 0 ? { height: rows, width: columns } : undefined;
}

/** Resizes the process's terminal whenever ours changes size (SIGWINCH); returns the detach function. */
export function followWindowSize(client: ApiClient, ref: ProcessRef): () => void {
  const stdout = process.stdout;
  const resize = () => {
    if (!(stdout.rows > 0 && stdout.columns > 0)) return;
    void client
      .call('exec.resize', { ...ref, rows: stdout.rows, cols: stdout.columns })
      .catch(() => undefined);
  };
  stdout.on('resize', resize);
  return () => stdout.off('resize', resize);
}

/** Copies stdin to the process in order, one call at a time (pausing our stdin meanwhile); EOF closes theirs. */
export function copyStdin(client: ApiClient, ref: ProcessRef, tty: boolean): { stop(): void } {
  const stdin = process.stdin;
  const raw = tty && stdin.isTTY === true;
  // Raw: every key goes to the guest's terminal as typed; its line discipline echoes and makes Ctrl-C a SIGINT.
  if (raw) stdin.setRawMode(true);
  let stopped = false;
  let chain: Promise<unknown> = Promise.resolve();
  const send = (method: string, params: Record<string, unknown>) => {
    chain = chain
      .then(() => (stopped ? undefined : client.call(method, { ...ref, ...params })))
      .catch(() => {
        // The process ended (or closed its stdin): nothing more to send.
        stop();
      });
    return chain;
  };
  const onData = (chunk: Buffer) => {
    stdin.pause();
    for (let at = 0; at < chunk.length; at += stdinChunkBytes) {
      send('exec.writeStdin', { data: chunk.subarray(at, at + stdinChunkBytes).toString('base64') });
    }
    void chain.then(() => {
      if (!stopped) stdin.resume();
    });
  };
  const onEnd = () => void send('exec.closeStdin', {});
  const stop = () => {
    if (stopped) return;
    stopped = true;
    stdin.off('data', onData);
    stdin.off('end', onEnd);
    if (raw) stdin.setRawMode(false);
    // Nobody reads it again: destroyed, it cannot keep the CLI alive.
    stdin.destroy();
  };
  stdin.on('data', onData);
  stdin.once('end', onEnd);
  return { stop };
}
