// What the shim knows of the tasks it serves: containerd's (namespace, id) → sandboxd's sandbox / container /
// exec, their stdio and the exit each last reported. All of it can be rebuilt from sandboxd and containerd.

import type { Limits } from './pod-resize.js';
import type { Stdio, StdioPaths } from './stdio.js';

export interface ExitInfo {
  readonly status: number;
  /** ms since the epoch. */
  readonly at: number;
}

export interface Proc {
  readonly task: Task;
  /** '' = the task's init process. */
  readonly execId: string;
  readonly paths: StdioPaths;
  io?: Stdio;
  pid: number;
  exit?: ExitInfo;
}

export interface Task {
  readonly namespace: string;
  readonly id: string;
  readonly bundle: string;
  readonly sandboxId: string;
  readonly containerId: string;
  /** The task made its sandbox (not a CRI container joining its pod's): deleting the task deletes it. */
  readonly ownsSandbox: boolean;
  readonly rootfs: readonly Record<string, unknown>[];
  rootfsMounted: boolean;
  readonly init: Proc;
  readonly execs: Map<string, Proc>;
  /** Delete answered: calls see NotFound; kept until its TaskDelete went out. */
  deleted: boolean;
  /** Memory and CPU limits as last applied (a pod's VM grows to hold its containers': pod-resize.ts). */
  limits?: Limits;
}

const key = (namespace: string, id: string) => `${namespace}\0${id}`;

export class TaskTable {
  private readonly tasks = new Map<string, Task>();
  /** sandboxd (sandbox, container) → task, for events. */
  private readonly byContainer = new Map<string, Task>();
  /** Starts that promised a task is coming (start answered, Create not yet): the server stays up for them. */
  private readonly reservations: NodeJS.Timeout[] = [];
  /** Creates in flight (a VM may take minutes to boot): each holds the server up. */
  private creating = 0;

  add(task: Task): void {
    this.tasks.set(key(task.namespace, task.id), task);
    this.byContainer.set(key(task.sandboxId, task.containerId), task);
  }

  has(namespace: string, id: string): boolean {
    return this.tasks.has(key(namespace, id));
  }

  /** A live task (not deleted). */
  get(namespace: string, id: string): Task | undefined {
    const t = this.tasks.get(key(namespace, id));
    return t && !t.deleted ? t : undefined;
  }

  byRef(sandboxId: string, containerId: string): Task | undefined {
    return this.byContainer.get(key(sandboxId, containerId));
  }

  remove(task: Task): void {
    if (this.tasks.get(key(task.namespace, task.id)) === task)
      this.tasks.delete(key(task.namespace, task.id));
    if (this.byContainer.get(key(task.sandboxId, task.containerId)) === task) {
      this.byContainer.delete(key(task.sandboxId, task.containerId));
    }
  }

  /** Tasks not yet deleted, in every namespace. */
  live(): Task[] {
    return [...this.tasks.values()].filter((t) => !t.deleted);
  }

  /** Tasks in the same sandbox as `task` (a pod's containers), itself excluded. */
  siblings(task: Task): Task[] {
    return [...this.tasks.values()].filter((t) => t !== task && !t.deleted && t.sandboxId === task.sandboxId);
  }

  /** Holds the server up for a coming Create; lapses after `ttlMs` (then `onLapse`) if none comes. */
  reserve(ttlMs: number, onLapse: () => void): void {
    const timer = setTimeout(() => {
      const i = this.reservations.indexOf(timer);
      if (i >= 0) this.reservations.splice(i, 1);
      onLapse();
    }, ttlMs);
    timer.unref();
    this.reservations.push(timer);
  }

  /** A Create arrived: the oldest reservation is used up (its lapse timer with it, so it cannot take another's). */
  settleReservation(): void {
    const timer = this.reservations.shift();
    if (timer) clearTimeout(timer);
  }

  /** A Create began: it uses up the oldest reservation and holds the server up itself until endCreate. */
  beginCreate(): void {
    this.settleReservation();
    this.creating++;
  }

  endCreate(): void {
    this.creating = Math.max(0, this.creating - 1);
  }

  get idle(): boolean {
    return this.live().length === 0 && this.reservations.length === 0 && this.creating === 0;
  }
}

/** containerd's exit status of a process: its code, or 128 + the signal number. */
export function exitStatusOf(
  exit: { exitCode: number; signal?: string },
  signals: Record<string, number>,
): number {
  if (exit.signal) {
    const n = signals[exit.signal.startsWith('SIG') ? exit.signal : `SIG${exit.signal}`];
    if (n !== undefined) return 128 + n;
  }
  return exit.exitCode;
}
