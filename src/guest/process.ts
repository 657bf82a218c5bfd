// One process in the guest (a container's init or an exec): crun spawned with its pipes into output buffers, the
// terminal helper for a pty, and the exit settled once.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { Internal } from '../errors/index.js';
import type { GuestExitStatus } from './events.js';
import { consoleSizeOf, exitStatusOf, type OciProcess } from './oci-spec.js';
import { DEFAULT_OUTPUT_CAPACITY, OutputBuffer } from './output.js';

/** How long the terminal helper gets to listen on its console socket. */
const CONSOLE_READY_MS = 10_000;
/** After its process exited, the terminal helper drains this long before it is killed (a daemon may hold the pty). */
export const CONSOLE_DRAIN_MS = 2_000;

/** One process (a container's init or an exec) with its pipes, buffered output and exit. */
export class GuestProcess {
  readonly stdout: OutputBuffer;
  readonly stderr: OutputBuffer;
  pid = 0;
  stdin: NodeJS.WritableStream | undefined;
  exit: GuestExitStatus | undefined;
  readonly exited: Promise<GuestExitStatus>;
  #resolveExit!: (status: GuestExitStatus) => void;
  child: ChildProcess | undefined;
  /** The terminal helper relaying the pty master (terminal processes only). */
  console: ChildProcess | undefined;
  /** Window sizes for the terminal (terminal processes only). */
  resize: ((rows: number, cols: number) => void) | undefined;
  /** performance.now() marks: crun spawned, start gate opened (init only), for the in-guest timing metrics. */
  spawnedAt = 0;
  createdAt = 0;
  startedAt = 0;
  /** crun could not execute the program (missing: 127, not executable: 126): an exit, not an RPC failure. */
  notRun = false;
  #closed!: () => void;
  /** Resolved once crun's pipes are closed: all it said is in stdout/stderr. */
  readonly closed: Promise<void> = new Promise((resolve) => {
    this.#closed = resolve;
  });

  markClosed(): void {
    this.#closed();
  }

  constructor(
    readonly execId: string,
    outputCapacity = DEFAULT_OUTPUT_CAPACITY,
  ) {
    this.stdout = new OutputBuffer(outputCapacity);
    this.stderr = new OutputBuffer(outputCapacity);
    this.exited = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
  }

  settle(status: GuestExitStatus): void {
    if (this.exit) return;
    this.exit = status;
    this.#resolveExit(status);
  }

  announce: () => void = () => {};
  /** Resolved once the RPC that made this process run (StartContainer, ExecProcess) has answered. */
  readonly announced: Promise<void> = new Promise((resolve) => {
    this.announce = resolve;
  });
}

/** Runs a short command to its end (bounded to 60 s): its exit code and what it said on both streams. */
export function runCommand(file: string, args: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolvePromise) => {
    execFile(file, [...args], { timeout: 60_000, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolvePromise({ code, output: `${stdout}${stderr}`.trim() });
    });
  });
}

export interface ConsoleOptions {
  /** Where the console socket goes (short and flat: sun_path holds 107 bytes). */
  readonly socketPath: string;
  readonly helperPath: string;
  readonly containerId: string;
  readonly logger: Logger;
}

/**
 * Starts the terminal helper for `process` and resolves once it listens on the console socket to hand crun.
 * crun sends the pty master there (SCM_RIGHTS, which Node cannot receive); the helper relays it over pipes: its
 * stdout becomes the process's stdout (a terminal has no separate stderr), its stdin is the process's stdin, and
 * its fd 3 takes window sizes.
 */
export async function openConsole(
  process: GuestProcess,
  size: OciProcess['consoleSize'],
  options: ConsoleOptions,
): Promise<void> {
  const { socketPath, helperPath, containerId, logger } = options;
  await mkdir(dirname(socketPath), { recursive: true });
  const helper = spawn(helperPath, [socketPath], { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
  const logContext = { containerId, execId: process.execId, step: 'console' };
  await new Promise<void>((resolvePromise, reject) => {
    let said = '';
    const fail = (why: string) => {
      clearTimeout(timer);
      helper.kill('SIGKILL');
      reject(new Internal('console helper', why, { containerId, execId: process.execId }));
    };
    const timer = setTimeout(() => fail(`not listening within ${CONSOLE_READY_MS} ms`), CONSOLE_READY_MS);
    const onData = (chunk: Buffer) => {
      said += chunk.toString('utf8');
      if (!said.startsWith('ready\n')) return;
      clearTimeout(timer);
      helper.stderr?.off('data', onData);
      helper.off('exit', onExit);
      helper.off('error', onError);
      helper.stderr?.on('data', (more: Buffer) =>
        logger.warn({ ...logContext, message: more.toString('utf8').trim() }, 'console helper says'),
      );
      resolvePromise();
    };
    const onExit = (code: number | null) => fail(`${helperPath} exited ${code}: ${said.trim()}`);
    const onError = (err: Error) => fail(`${helperPath}: ${err.message}`);
    helper.stderr?.on('data', onData);
    helper.once('exit', onExit);
    helper.once('error', onError);
  });
  helper.on('error', (err) => logger.warn({ ...logContext, err }, 'console helper failed'));
  process.console = helper;
  process.stdin = helper.stdin ?? undefined;
  helper.stdin?.on('error', () => {});
  const control = helper.stdio[3] as NodeJS.WritableStream | null;
  control?.on('error', () => {});
  process.resize = (rows, cols) => control?.write(`${rows} ${cols}\n`);
  // crun sizes the pty from consoleSize before the process runs; the helper applies it too, for a crun that
  // does not.
  const { height, width } = consoleSizeOf(0, 0, size);
  process.resize(height, width);
  const stdout = helper.stdout;
  if (stdout) {
    stdout.on('data', (chunk: Buffer) => process.stdout.append(chunk));
    process.stdout.setSource({ pause: () => stdout.pause(), resume: () => stdout.resume() });
  }
  helper.on('close', () => process.stdout.finish());
}

/**
 * Spawns crun for `process` with its pipes into the process's buffers; `onExit` gets crun's exit status (spawn
 * failures settle the process with 255 at once).
 */
export function spawnCrun(
  crun: string,
  args: string[],
  process: GuestProcess,
  log: { logger: Logger; containerId: string },
  onExit: (status: GuestExitStatus) => void,
): ChildProcess {
  // With a terminal the process's stdio is the pty (relayed by the console helper); crun's own pipes carry only
  // crun's messages, kept as stderr.
  const terminal = process.console;
  const child = spawn(crun, args, { stdio: [terminal ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  process.spawnedAt = performance.now();
  process.child = child;
  if (!terminal) process.stdin = child.stdin ?? undefined;
  child.stdin?.on('error', () => {});
  const pipes = [
    [child.stdout, terminal ? process.stderr : process.stdout],
    [child.stderr, process.stderr],
  ] as const;
  for (const [pipe, buffer] of pipes) {
    if (!pipe) continue;
    pipe.on('data', (chunk: Buffer) => buffer.append(chunk));
    buffer.setSource({ pause: () => pipe.pause(), resume: () => pipe.resume() });
  }
  child.on('error', (err) => {
    log.logger.error({ err, containerId: log.containerId, execId: process.execId }, 'crun spawn failed');
    terminal?.kill('SIGKILL');
    process.stdout.finish();
    process.stderr.finish();
    process.settle({ exitCode: 255, signal: '', oomKilled: false });
  });
  child.on('close', () => {
    process.markClosed();
    if (!terminal) process.stdout.finish();
    process.stderr.finish();
    if (terminal && terminal.exitCode === null && terminal.signalCode === null) {
      // The helper ends by itself when the last pty slave closes; a daemonised child may keep one open.
      setTimeout(() => terminal.kill('SIGKILL'), CONSOLE_DRAIN_MS).unref();
    }
  });
  child.on('exit', (code, signal) => onExit(exitStatusOf(code, signal)));
  return child;
}

/**
 * Wall time crun itself took, without the time a container waited at the start gate: `crun run` (spawn → pid
 * reported, gate → exit) or `crun exec` (spawn → exit). The baseline the agent benchmark sets RPC times against.
 */
export class CrunTimings {
  containerRuns = 0;
  containerSeconds = 0;
  execs = 0;
  execSeconds = 0;

  record(process: GuestProcess): void {
    const now = performance.now();
    if (process.execId !== '') {
      this.execs++;
      this.execSeconds += (now - process.spawnedAt) / 1000;
    } else if (process.createdAt > 0 && process.startedAt > 0) {
      this.containerRuns++;
      this.containerSeconds += (process.createdAt - process.spawnedAt + (now - process.startedAt)) / 1000;
    }
  }
}
