// A process's stdio between containerd's fifos and sandboxd: exec.output (follow) copied into the stdout /
// stderr fifos, the stdin fifo copied to exec.writeStdin (one write at a time: the fifo is not read faster
// than sandboxd takes it), its end turned into exec.closeStdin.
import { constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ApiClient, Notification } from '../api/index.js';

export interface ProcessRef {
  readonly sandboxId: string;
  readonly containerId: string;
  /** '' = the container's init. */
  readonly execId: string;
}

export interface StdioPaths {
  readonly stdin: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly terminal: boolean;
}

/** Bytes per exec.writeStdin: base64 of it stays well under the API's 1 MiB line limit. */
const STDIN_CHUNK = 256 * 1024;

async function openFifo(path: string, write: boolean): Promise<Socket> {
  // Non-blocking open, then a libuv pipe: a fifo waiting for its peer never holds a thread-pool thread.
  const flags = (write ? constants.O_WRONLY : constants.O_RDONLY) | constants.O_NONBLOCK;
  // A raw fd, not a FileHandle: a FileHandle closes its fd when collected, under the socket's feet.
  const fd = openSync(path, flags);
  const socket = new Socket({ fd, readable: !write, writable: write });
  socket.on('error', () => undefined);
  return socket;
}

export class Stdio {
  /** Resolves once all output reached the fifos (both streams ended) and they were closed. */
  readonly drained: Promise<void>;
  private markDrained: () => void = () => undefined;
  private outputs: (Socket | undefined)[] = [];
  private stdin: Socket | undefined;
  private stdinClosed = false;
  private detach: () => void = () => undefined;

  private constructor(
    private readonly api: ApiClient,
    private readonly ref: ProcessRef,
    private readonly log: Logger,
  ) {
    this.drained = new Promise((r) => {
      this.markDrained = r;
    });
  }

  /**
   * Opens the fifos and subscribes to the process's output from its first byte: call before the process
   * starts and nothing is missed.
   */
  static async attach(api: ApiClient, ref: ProcessRef, paths: StdioPaths, log: Logger): Promise<Stdio> {
    const io = new Stdio(api, ref, log);
    const [stdout, stderr] = await Promise.all([
      paths.stdout ? openFifo(paths.stdout, true) : undefined,
      paths.stderr && !paths.terminal ? openFifo(paths.stderr, true) : undefined,
    ]);
    io.outputs = [stdout, stderr];
    await io.follow(stdout, stderr ?? (paths.terminal ? stdout : undefined));
    if (paths.stdin) {
      io.stdin = await openFifo(paths.stdin, false);
      io.pumpStdin(io.stdin);
    }
    return io;
  }

  private async follow(stdout: Socket | undefined, stderr: Socket | undefined): Promise<void> {
    let subscription: string | undefined;
    let ended = 0;
    const early: Notification[] = [];
    const handle = (n: Notification) => {
      if (n.params.subscription !== subscription) return;
      if (n.method === 'exec.output') {
        const to = n.params.stream === 'stderr' ? stderr : stdout;
        to?.write(Buffer.from(String(n.params.data), 'base64'));
      } else if (n.method === 'exec.outputEnd' && ++ended === 2) this.finishOutput();
    };
    const off = this.api.onNotification((n) => (subscription === undefined ? early.push(n) : handle(n)));
    this.detach = off;
    this.api.onClose(() => this.finishOutput());
    try {
      const answer = await this.api.call<{ subscription: string }>('exec.output', {
        ...this.ref,
        follow: true,
      });
      subscription = answer.subscription;
    } catch (err) {
      off();
      throw err;
    }
    for (const n of early.splice(0)) handle(n);
  }

  private finishOutput(): void {
    this.detach();
    const outs = this.outputs.filter((s): s is Socket => s !== undefined);
    this.outputs = [];
    Promise.all(
      outs.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.destroyed) return resolve();
            s.once('close', () => resolve());
            s.end();
          }),
      ),
    ).then(() => this.markDrained());
  }

  private pumpStdin(socket: Socket): void {
    let queue = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      socket.pause();
      queue = queue.then(async () => {
        for (let at = 0; at < chunk.length; at += STDIN_CHUNK) {
          await this.api
            .call('exec.writeStdin', {
              ...this.ref,
              data: chunk.subarray(at, at + STDIN_CHUNK).toString('base64'),
            })
            .catch((err: Error) => this.log.warn({ err: err.message, ...this.ref }, 'stdin write failed'));
        }
        if (!socket.destroyed) socket.resume();
      });
    });
    socket.on('end', () => {
      queue = queue.then(() => this.closeStdin());
    });
  }

  /** containerd's CloseIO, or the end of the stdin fifo: closes the process's stdin (once). */
  async closeStdin(): Promise<void> {
    if (this.stdinClosed) return;
    this.stdinClosed = true;
    this.stdin?.destroy();
    await this.api.call('exec.closeStdin', this.ref).catch((err: Error) => {
      this.log.debug({ err: err.message, ...this.ref }, 'stdin close failed');
    });
  }

  /** Drops everything now (delete, failed create). */
  close(): void {
    this.stdin?.destroy();
    for (const s of this.outputs) s?.destroy();
    this.outputs = [];
    this.detach();
    this.markDrained();
  }
}
