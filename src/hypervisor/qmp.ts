// QMP client: one JSON-per-line connection to a QEMU monitor socket, with request ids, deadlines and events.
import { createConnection, type Socket } from 'node:net';
import { type Observable, Subject } from 'rxjs';
import { HypervisorError, Timeout } from '../errors/index.js';

/** An asynchronous QMP event as QEMU sends it (`SHUTDOWN`, `STOP`, `RESUME`, `DEVICE_DELETED`, …). */
export interface QmpEvent {
  readonly event: string;
  readonly data: Readonly<Record<string, unknown>>;
  /** Microseconds since the epoch, from QEMU's own clock. */
  readonly timestampUs: number;
}

/** QEMU's `{ "error": { "class", "desc" } }`. */
export interface QmpErrorBody {
  readonly class: string;
  readonly desc: string;
}

export interface QmpConnectOptions {
  /** Deadline for connect + greeting + capabilities negotiation. Default 5000 ms. */
  readonly timeoutMs?: number;
  /** Default deadline of each command. Default 10000 ms. */
  readonly commandTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

export interface QmpExecuteOptions {
  readonly timeoutMs?: number;
}

interface Pending {
  readonly command: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;
/** QMP lines are small; a runaway line means a broken peer, not a big answer. */
const MAX_LINE_BYTES = 16 * 1024 * 1024;

/**
 * A negotiated QMP session. Obtain one with `QmpClient.connect`; every command gets a fresh id and a
 * deadline. The session ends when QEMU closes the socket (it exited, or `quit`) or on `close()`:
 * pending commands then reject with HypervisorError, `events` completes and `closed` resolves.
 * Reconnecting after a daemon restart is simply connecting again: QEMU's QMP server accepts a new
 * client once the previous one is gone.
 */
export class QmpClient {
  readonly #socket: Socket;
  readonly #path: string;
  readonly #commandTimeoutMs: number;
  readonly #pending = new Map<string, Pending>();
  readonly #events = new Subject<QmpEvent>();
  readonly #closed: Promise<void>;
  #resolveClosed!: () => void;
  #nextId = 1;
  #buffer = '';
  #isClosed = false;
  #greeting: unknown;
  #onGreeting: ((greeting: unknown) => void) | undefined;

  /** QMP events as they arrive; completes when the session ends. Hot: no replay. */
  readonly events: Observable<QmpEvent> = this.#events.asObservable();

  private constructor(socket: Socket, path: string, commandTimeoutMs: number) {
    this.#socket = socket;
    this.#path = path;
    this.#commandTimeoutMs = commandTimeoutMs;
    this.#closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.#onData(chunk));
    socket.on('error', () => this.#finish('socket error'));
    socket.on('close', () => this.#finish('connection closed'));
  }

  /**
   * Connects to a QMP unix socket, reads the greeting and negotiates capabilities. Throws
   * HypervisorError('qmp connect') when nothing listens or the peer is not QMP, Timeout('qmp connect').
   */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const socket = createConnection({ path });
    const client = new QmpClient(socket, path, options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS);
    let timer: NodeJS.Timeout | undefined;
    const onAbort = (): void => client.close();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const handshake = (async () => {
        await new Promise<void>((resolve, reject) => {
          socket.once('connect', resolve);
          socket.once('error', reject);
        });
        await client.#waitGreeting();
        await client.execute('qmp_capabilities', undefined, { timeoutMs });
      })();
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Timeout('qmp connect', timeoutMs, { path })), timeoutMs);
      });
      await Promise.race([handshake, deadline]);
      if (options.signal?.aborted) throw new HypervisorError('qmp connect', 'aborted', { path });
      return client;
    } catch (err) {
      client.close();
      if (err instanceof Timeout || err instanceof HypervisorError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new HypervisorError('qmp connect', message, { path }, err);
    } finally {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** The greeting QEMU sent (`{ QMP: { version, capabilities } }`). */
  get greeting(): unknown {
    return this.#greeting;
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Resolves once the session has ended, for whatever reason. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /**
   * Runs one command and resolves with its `return` value. Throws HypervisorError(`qmp <command>`)
   * with QEMU's error class and text, or when the session ends first; Timeout(`qmp <command>`)
   * after the deadline (a late answer is then dropped).
   */
  execute<T = unknown>(
    command: string,
    args?: Readonly<Record<string, unknown>>,
    options: QmpExecuteOptions = {},
  ): Promise<T> {
    const step = `qmp ${command}`;
    if (this.#isClosed) {
      return Promise.reject(new HypervisorError(step, 'QMP session is closed', { path: this.#path }));
    }
    const id = `sbx-${this.#nextId++}`;
    const timeoutMs = options.timeoutMs ?? this.#commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Timeout(step, timeoutMs, { path: this.#path }));
      }, timeoutMs);
      this.#pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject, timer });
      const message =
        args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.#socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** Ends the session from our side; QEMU keeps running. Idempotent. */
  close(): void {
    this.#socket.destroy();
    this.#finish('closed by client');
  }

  #waitGreeting(): Promise<unknown> {
    if (this.#greeting !== undefined) return Promise.resolve(this.#greeting);
    return new Promise((resolve, reject) => {
      this.#onGreeting = resolve;
      void this.#closed.then(() => reject(new HypervisorError('qmp connect', 'closed before greeting')));
    });
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    if (this.#buffer.length > MAX_LINE_BYTES) {
      this.#socket.destroy();
      this.#finish('line too long');
      return;
    }
    let newline = this.#buffer.indexOf('\n');
    while (newline >= 0) {
      const line = this.#buffer.slice(0, newline).trim();
      this.#buffer = this.#buffer.slice(newline + 1);
      if (line.length > 0) this.#onLine(line);
      newline = this.#buffer.indexOf('\n');
    }
  }

  #onLine(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch {
      // A garbled line cannot be matched to a request; the deadline of that request reports it.
      return;
    }
    if ('QMP' in message) {
      this.#greeting = message;
      this.#onGreeting?.(message);
      this.#onGreeting = undefined;
      return;
    }
    if (typeof message.event === 'string') {
      const ts = message.timestamp as { seconds?: number; microseconds?: number } | undefined;
      this.#events.next({
        event: message.event,
        data: (message.data as Record<string, unknown> | undefined) ?? {},
        timestampUs: (ts?.seconds ?? 0) * 1_000_000 + (ts?.microseconds ?? 0),
      });
      return;
    }
    const id = typeof message.id === 'string' ? message.id : undefined;
    const pending = id === undefined ? undefined : this.#pending.get(id);
    if (!pending || id === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if ('error' in message) {
      const body = message.error as QmpErrorBody;
      pending.reject(
        new HypervisorError(`qmp ${pending.command}`, body.desc, { qmpClass: body.class, path: this.#path }),
      );
    } else {
      pending.resolve(message.return);
    }
  }

  #finish(reason: string): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      this.#pending.delete(id);
      pending.reject(new HypervisorError(`qmp ${pending.command}`, reason, { path: this.#path }));
    }
    this.#events.complete();
    this.#resolveClosed();
  }
}
