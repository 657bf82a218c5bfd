// A process's stdio between containerd's fifos and sandboxd: exec.output (follow) copied into the stdout /
// stderr fifos, the stdin fifo copied to exec.writeStdin (one write at a time: the fifo is not read faster
// than sandboxd takes it), its end turned into exec.closeStdin.
import { constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ApiClient, Notification } from '../api/index.js';
import { sleep } from '../timing/index.js';
import type { ApiLink } from './connection.js';

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

/** How long a writer waits for containerd's reader to open its side of a fifo. */
const READER_WAIT_MS = 30_000;

export async function openFifo(path: string, write: boolean, readerWaitMs = READER_WAIT_MS): Promise<Socket> {
  // Non-blocking open, then a libuv pipe: a fifo waiting for its peer never holds a thread-pool thread.
  const flags = (write ? constants.O_WRONLY : constants.O_RDONLY) | constants.O_NONBLOCK;
  // A raw fd, not a FileHandle: a FileHandle closes its fd when collected, under the socket's feet.
  const fd = write ? await openWriter(path, flags, readerWaitMs) : openSync(path, flags);
  const socket = new Socket({ fd, readable: !write, writable: write });
  socket.on('error', () => undefined);
  return socket;
}

/**
 * A non-blocking write open of a fifo fails with ENXIO while no reader has it open, and containerd's fifo
 * package opens its read side in a goroutine after it sent the call: wait for it, as a blocking open would.
 */
async function openWriter(path: string, flags: number, waitMs = READER_WAIT_MS): Promise<number> {
  const deadline = Date.now() + waitMs;
  for (let pause = 2; ; pause = Math.min(pause * 2, 50)) {
    try {
      return openSync(path, flags);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
      if (Date.now() >= deadline) {
        throw new Error(`no reader opened the fifo ${path} within ${waitMs} ms`);
      }
      await sleep(pause);
    }
  }
}

export class Stdio {
  /** Resolves once all output reached the fifos (both streams ended) and they were closed. */
  readonly drained: Promise<void>;
  private markDrained: () => void = () => undefined;
  private outputs: (Socket | undefined)[] = [];
  private stdin: Socket | undefined;
  private stdinClosed = false;
  private finished = false;
  /** The log offset after the last chunk written: a follow resumes there on a new connection. */
  private next: number | undefined;
  private readonly ended = new Set<string>();
  private detach: () => void = () => undefined;
  private readonly offReconnect: () => void;

  private constructor(
    private api: ApiClient,
    link: ApiLink,
    private readonly ref: ProcessRef,
    private readonly log: Logger,
  ) {
    this.drained = new Promise((r) => {
      this.markDrained = r;
    });
    // sandboxd restarted: the output goes on from where it was (nothing twice, nothing lost).
    this.offReconnect = link.onReconnect((client) => {
      if (this.finished) return;
      this.api = client;
      this.log.info({ ...this.ref, offset: this.next ?? 0 }, 'output follow resumed');
      this.follow(client).catch((err: Error) => {
        this.log.warn({ err: err.message, ...this.ref }, 'output follow not resumed');
        this.finishOutput();
      });
    });
  }

  /**
   * Opens the fifos and subscribes to the process's output from its first byte: call before the process
   * starts and nothing is missed.
   */
  static async attach(link: ApiLink, ref: ProcessRef, paths: StdioPaths, log: Logger): Promise<Stdio> {
    const api = await link.get();
    const io = new Stdio(api, link, ref, log);
    try {
      const [stdout, stderr] = await Promise.all([
        paths.stdout ? openFifo(paths.stdout, true) : undefined,
        paths.stderr && !paths.terminal ? openFifo(paths.stderr, true) : undefined,
      ]);
      io.outputs = [stdout, stderr ?? (paths.terminal ? stdout : undefined)];
      await io.follow(api);
      if (paths.stdin) {
        io.stdin = await openFifo(paths.stdin, false);
        io.pumpStdin(io.stdin);
      }
    } catch (err) {
      io.close();
      throw err;
    }
    return io;
  }

  private async follow(api: ApiClient): Promise<void> {
    const [stdout, stderr] = this.outputs;
    this.detach();
    let subscription: string | undefined;
    const early: Notification[] = [];
    const handle = (n: Notification) => {
      if (n.params.subscription !== subscription || this.finished) return;
      if (n.method === 'exec.output') {
        const to = n.params.stream === 'stderr' ? stderr : stdout;
        to?.write(Buffer.from(String(n.params.data), 'base64'));
        if (typeof n.params.next === 'number') this.next = n.params.next;
      } else if (n.method === 'exec.outputEnd') {
        this.ended.add(String(n.params.stream));
        if (this.ended.size === 2) this.finishOutput();
      }
    };
    const off = api.onNotification((n) => (subscription === undefined ? early.push(n) : handle(n)));
    this.detach = off;
    try {
      const answer = await api.call<{ subscription: string }>('exec.output', {
        ...this.ref,
        follow: true,
        ...(this.next !== undefined ? { offset: this.next } : {}),
      });
      subscription = answer.subscription;
    } catch (err) {
      off();
      throw err;
    }
    for (const n of early.splice(0)) handle(n);
  }

  private finishOutput(): void {
    if (this.finished) return;
    this.finished = true;
    this.offReconnect();
    this.detach();
    const outs = [...new Set(this.outputs)].filter((s): s is Socket => s !== undefined);
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
    this.finished = true;
    this.offReconnect();
    this.stdin?.destroy();
    for (const s of this.outputs) s?.destroy();
    this.outputs = [];
    this.detach();
    this.markDrained();
  }
}
