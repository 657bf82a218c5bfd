// The output keeper: while the daemon runs it reads every started container's and exec's stdout and stderr through
// the agent (so the guest's bounded buffer never has to drop), appends them to the process's host log, resumes after a
// restart where each log ends, and removes a log once its container or exec is deleted (never before).
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Observable, Subscription } from 'rxjs';
import type { Runtime } from '../actors/index.js';
import type { Agent } from '../agent/index.js';
import type { EventEnvelope } from '../events/index.js';
import { lifeOf } from '../events/index.js';
import type { OutputStream } from './cri.js';
import { type ReadOptions, type ReadResult, readLog } from './reader.js';
import { DEFAULT_LOG_LIMITS, type LogLimits, ProcessLogWriter } from './writer.js';

export interface OutputKeeperOptions {
  readonly runtime: Runtime;
  readonly agent: Agent & Required<Pick<Agent, 'readOutput'>>;
  /** The event log's live feed: each appended event is a cue to look for processes to attach or logs to remove. */
  readonly events: { subscribe(fromSeq: number): Observable<EventEnvelope>; lastSeq(): number };
  readonly stateDir: string;
  readonly limits?: LogLimits;
  readonly logger: Logger;
  /** Told when the guest dropped output nobody read (the keeper records the event and writes the marker itself). */
  readonly onLoss?: (loss: OutputLoss) => void;
}

export interface ProcessRef {
  readonly sandboxId: string;
  readonly containerId: string;
  /** '' = the container's init process. */
  readonly execId: string;
}

export interface OutputLoss extends ProcessRef {
  readonly stream: OutputStream;
  readonly bytes: number;
  /** Stream offset where the lost bytes began. */
  readonly offset: number;
}

const STREAMS: readonly OutputStream[] = ['stdout', 'stderr'];
const SANDBOX_UP = new Set(['running', 'pausing', 'paused', 'resuming']);
const CONTAINER_STARTED = new Set(['running', 'pausing', 'paused', 'resuming', 'stopped']);
const EXEC_STARTED = new Set(['running', 'exited']);

interface Attached {
  readonly ref: ProcessRef;
  readonly dir: string;
  writer: Promise<ProcessLogWriter> | undefined;
  /** Streams currently read from the agent. */
  readonly subs: Map<OutputStream, Subscription>;
  /** Streams that completed (the process exited and all of it was read). */
  readonly ended: Set<OutputStream>;
  /** A stream failed (VM gone, agent restarted): what the log has is all there will be unless a pass re-attaches. */
  broken: boolean;
}

export class OutputKeeper {
  readonly #o: OutputKeeperOptions;
  readonly #limits: LogLimits;
  readonly #procs = new Map<string, Attached>();
  #feed: Subscription | undefined;
  #syncing: Promise<void> | undefined;
  #again = false;
  #closed = false;
  #tick: NodeJS.Timeout | undefined;

  constructor(options: OutputKeeperOptions) {
    this.#o = options;
    this.#limits = options.limits ?? DEFAULT_LOG_LIMITS;
  }

  /** Attaches to every started process and follows the event log for new ones. Resolves after the first pass. */
  async start(): Promise<void> {
    // An event is appended before the runtime folds it into its views: look again a moment later, and once a second
    // anyway (cheap: the views are in memory), so a state seen one step early is caught up at once.
    this.#feed = this.#o.events.subscribe(this.#o.events.lastSeq() + 1).subscribe({
      next: () => {
        void this.#kick();
        setTimeout(() => void this.#kick(), 30).unref();
      },
      error: () => undefined, // the daemon handles a failed log
    });
    this.#tick = setInterval(() => void this.#kick(), 1000);
    this.#tick.unref();
    await this.#kick();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#feed?.unsubscribe();
    clearInterval(this.#tick);
    await this.#syncing?.catch(() => undefined);
    await Promise.all([...this.#procs.values()].map((p) => this.#detach(p)));
    this.#procs.clear();
  }

  /** `<stateDir>/sandboxes/<id>/logs/<container life>/<init | exec-<exec life>>`; NotFound from the runtime. */
  dirOf(ref: ProcessRef): string {
    const c = this.#o.runtime.getContainer(ref.sandboxId, ref.containerId);
    const base = join(this.#o.stateDir, 'sandboxes', ref.sandboxId, 'logs', lifeOf(c.id, c.incarnation));
    if (ref.execId === '') return join(base, 'init');
    const e = this.#o.runtime.getExec(ref.sandboxId, ref.containerId, ref.execId);
    return join(base, `exec-${lifeOf(e.id, e.incarnation)}`);
  }

  /** Reads a process's log; `done` also when the process can no longer add to it (ended, nothing attached). */
  async read(ref: ProcessRef, options: ReadOptions = {}): Promise<ReadResult> {
    const dir = this.dirOf(ref);
    const result = await readLog(dir, options);
    return result.done || !this.#finalWithoutWriter(ref, dir) ? result : { ...result, done: true };
  }

  /**
   * Waits until the log grows past `offset`, ends, or `signal` aborts (then resolves). Polls as well, for a log whose
   * writer is not open in this process yet.
   */
  async waitForMore(ref: ProcessRef, offset: number, signal?: AbortSignal): Promise<void> {
    const proc = this.#procs.get(this.dirOf(ref));
    const writer = proc?.writer ? await proc.writer.catch(() => undefined) : undefined;
    const ac = new AbortController();
    const onAbort = () => ac.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => ac.abort(), 500);
    try {
      await (writer
        ? writer.waitForMore(offset, ac.signal)
        : new Promise((r) => ac.signal.addEventListener('abort', r)));
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Nothing will add to the log: its sandbox is down, the process never ran, or it ended and its stream broke. */
  #finalWithoutWriter(ref: ProcessRef, dir: string): boolean {
    const proc = this.#procs.get(dir);
    if (proc && proc.subs.size > 0) return false;
    try {
      if (!SANDBOX_UP.has(this.#o.runtime.getSandbox(ref.sandboxId).state)) return true;
      const state =
        ref.execId === ''
          ? this.#o.runtime.getContainer(ref.sandboxId, ref.containerId).state
          : this.#o.runtime.getExec(ref.sandboxId, ref.containerId, ref.execId).state;
      if (state === 'failed' || state === 'deleted') return true;
      return (state === 'stopped' || state === 'exited') && proc?.broken === true;
    } catch {
      return true;
    }
  }

  /** Runs a pass now, or right after the one running (passes never overlap). */
  #kick(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#syncing) {
      this.#again = true;
      return this.#syncing;
    }
    this.#syncing = (async () => {
      do {
        this.#again = false;
        await this.#sync().catch((err: unknown) => this.#o.logger.warn({ err }, 'host logs: pass failed'));
      } while (this.#again && !this.#closed);
    })().finally(() => {
      this.#syncing = undefined;
    });
    return this.#syncing;
  }

  /** One pass: attach what runs and is not read yet, drop and remove what was deleted. */
  async #sync(): Promise<void> {
    const { runtime } = this.#o;
    const wanted = new Map<string, { ref: ProcessRef; attach: boolean; ended: boolean }>();
    const sandboxes = new Set<string>();
    for (const s of runtime.listSandboxes()) {
      if (s.state === 'deleted') continue;
      sandboxes.add(s.id);
      const up = SANDBOX_UP.has(s.state);
      for (const c of runtime.listContainers(s.id)) {
        if (c.state === 'deleted') continue;
        const init = { sandboxId: s.id, containerId: c.id, execId: '' };
        wanted.set(this.dirOf(init), {
          ref: init,
          attach: up && CONTAINER_STARTED.has(c.state),
          ended: c.state === 'stopped',
        });
        for (const execId of c.execs) {
          let state: string;
          try {
            state = runtime.getExec(s.id, c.id, execId).state;
          } catch {
            continue;
          }
          if (state === 'deleted') continue;
          const ref = { sandboxId: s.id, containerId: c.id, execId };
          wanted.set(this.dirOf(ref), {
            ref,
            attach: up && EXEC_STARTED.has(state),
            ended: state === 'exited',
          });
        }
      }
    }
    // Deleted (its entity gone from the views): stop reading, then remove its log. A sandbox's whole dir goes with
    // the sandbox (the runtime removes it); a container's or exec's log goes here.
    for (const [dir, proc] of this.#procs) {
      if (wanted.has(dir)) continue;
      this.#procs.delete(dir);
      await this.#detach(proc);
      if (sandboxes.has(proc.ref.sandboxId)) await this.#remove(proc.ref, dir);
    }
    for (const [dir, { ref, attach, ended }] of wanted) {
      let proc = this.#procs.get(dir);
      if (!proc) {
        proc = { ref, dir, writer: undefined, subs: new Map(), ended: new Set(), broken: false };
        this.#procs.set(dir, proc);
      }
      // An ended process whose stream broke (its VM rebooted, say) has nothing more to give: no retry loop.
      if (attach && !(ended && proc.broken)) await this.#attach(proc);
    }
    await this.#removeOrphans(sandboxes, wanted);
  }

  /** Log dirs of live sandboxes that no container or exec owns any more (deleted while the daemon was down). */
  async #removeOrphans(sandboxes: Set<string>, wanted: Map<string, unknown>): Promise<void> {
    for (const sandboxId of sandboxes) {
      const root = join(this.#o.stateDir, 'sandboxes', sandboxId, 'logs');
      const containers = await readdir(root).catch(() => [] as string[]);
      for (const container of containers) {
        const procs = await readdir(join(root, container)).catch(() => [] as string[]);
        for (const p of procs) {
          const dir = join(root, container, p);
          if (!wanted.has(dir)) await rm(dir, { recursive: true, force: true });
        }
        if (!procs.some((p) => wanted.has(join(root, container, p)))) {
          await rm(join(root, container), { recursive: true, force: true });
        }
      }
    }
  }

  async #remove(ref: ProcessRef, dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
    if (ref.execId === '') await rm(join(dir, '..'), { recursive: true, force: true });
    this.#o.logger.debug({ ...ref, dir }, 'host log removed');
  }

  async #attach(proc: Attached): Promise<void> {
    if (this.#closed) return;
    proc.writer ??= ProcessLogWriter.open(proc.dir, this.#limits);
    let writer: ProcessLogWriter;
    try {
      writer = await proc.writer;
    } catch (err) {
      proc.writer = undefined;
      this.#o.logger.warn({ err, ...proc.ref }, 'host log: cannot open');
      return;
    }
    if (writer.done) return;
    proc.broken = false;
    const { sandboxId, containerId, execId } = proc.ref;
    for (const stream of STREAMS) {
      if (proc.subs.has(stream) || proc.ended.has(stream)) continue;
      let expected = writer.offset(stream);
      const sub = this.#o.agent.readOutput(sandboxId, containerId, execId, stream, expected).subscribe({
        next: (chunk) => {
          if (chunk.offset > expected) {
            const loss: OutputLoss = {
              ...proc.ref,
              stream,
              bytes: chunk.offset - expected,
              offset: expected,
            };
            this.#o.logger.warn(loss, 'host log: the guest dropped output nobody read');
            const recorded = this.#o.runtime.recordOutputDropped(loss).catch((err: unknown) => {
              this.#o.logger.warn({ err, ...loss }, 'host log: cannot record the dropped output');
            });
            void writer
              .markLost(stream, loss.bytes, recorded)
              .catch((err: unknown) => this.#writeFailed(proc, err));
            this.#o.onLoss?.(loss);
          }
          expected = chunk.offset + chunk.data.length;
          writer.append(stream, chunk.data).catch((err: unknown) => this.#writeFailed(proc, err));
        },
        error: (err: unknown) => {
          proc.subs.delete(stream);
          proc.broken = true;
          this.#o.logger.debug({ err, ...proc.ref, stream }, 'host log: output stream ended with an error');
          // Still running somewhere reachable? The next pass (a second from now, or the next event) attaches again.
          setTimeout(() => void this.#kick(), 1000).unref();
        },
        complete: () => {
          proc.subs.delete(stream);
          proc.ended.add(stream);
          if (proc.ended.size === STREAMS.length) {
            writer.finish().catch((err: unknown) => this.#writeFailed(proc, err));
          }
        },
      });
      if (!sub.closed) proc.subs.set(stream, sub);
    }
  }

  #writeFailed(proc: Attached, err: unknown): void {
    if (this.#closed) return;
    this.#o.logger.warn({ err, ...proc.ref, dir: proc.dir }, 'host log: write failed');
  }

  async #detach(proc: Attached): Promise<void> {
    for (const sub of proc.subs.values()) sub.unsubscribe();
    proc.subs.clear();
    const writer = proc.writer;
    proc.writer = undefined;
    if (writer) await (await writer.catch(() => undefined))?.close().catch(() => undefined);
  }
}
