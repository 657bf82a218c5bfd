// sandboxd's event log → containerd's task events. One subscription to the log, resumed from the last seq
// after any reconnect, so no exit is lost or sent twice; events go out in log order, which is containerd's
// order (TaskCreate → TaskStart → TaskExit → TaskDelete; TaskExecAdded → TaskExecStarted → TaskExit).
import { constants } from 'node:os';
import type { Logger } from 'pino';
import type { ApiClient, Notification } from '../api/index.js';
import type { EventPublisher, TaskEvent } from './publish.js';
import { exitStatusOf, type Proc, type TaskTable } from './tasks.js';

interface LogEvent {
  readonly seq: number;
  readonly stream: string;
  readonly type: string;
  readonly at: string;
  readonly data: Record<string, unknown>;
}

/** How long a TaskExit waits for its process's output to reach the fifos before it goes out anyway. */
const DRAIN_CAP_MS = 30_000;

const signals = constants.signals as unknown as Record<string, number>;

async function drained(proc: Proc): Promise<void> {
  if (!proc.io) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([proc.io.drained, new Promise((r) => (timer = setTimeout(r, DRAIN_CAP_MS)))]);
  if (timer) clearTimeout(timer);
}

export class EventBridge {
  private lastSeq = 0;
  /** Stream → what it is, learnt from each stream's first event (which names its ids). */
  private readonly streams = new Map<string, { sandboxId: string; containerId: string; execId: string }>();
  private subscription: string | undefined;
  private off: () => void = () => undefined;

  constructor(
    private readonly tasks: TaskTable,
    private readonly publisher: EventPublisher,
    private readonly log: Logger,
  ) {}

  /** Subscribes on `api` from the seq after the last one handled (the daemon's next one the first time). */
  async attach(api: ApiClient): Promise<void> {
    this.off();
    const early: Notification[] = [];
    let sub: string | undefined;
    const onNote = (n: Notification) => {
      if (sub === undefined) {
        early.push(n);
        return;
      }
      if (n.params.subscription !== sub) return;
      if (n.method === 'events.event') this.handle(n.params.event as LogEvent);
      else if (n.method === 'subscription.dropped') {
        this.log.warn({ lastSeq: this.lastSeq }, 'event subscription dropped: resubscribing');
        void this.attach(api).catch((err: Error) =>
          this.log.error({ err: err.message }, 'resubscribe failed'),
        );
      }
    };
    this.off = api.onNotification(onNote);
    if (this.lastSeq === 0) {
      const info = await api.call<{ events: { lastSeq: number } }>('daemon.info');
      this.lastSeq = info.events.lastSeq;
    }
    const r = await api.call<{ subscription: string }>('events.subscribe', { fromSeq: this.lastSeq + 1 });
    sub = r.subscription;
    this.subscription = sub;
    for (const n of early.splice(0)) onNote(n);
  }

  get seq(): number {
    return this.lastSeq;
  }

  get subscribed(): boolean {
    return this.subscription !== undefined;
  }

  private handle(e: LogEvent): void {
    if (e.seq <= this.lastSeq) return; // a resubscription may overlap: each seq once
    this.lastSeq = e.seq;
    const d = e.data;
    if (e.type === 'ContainerCreateRequested') {
      this.streams.set(e.stream, {
        sandboxId: String(d.sandboxId),
        containerId: String(d.containerId),
        execId: '',
      });
    } else if (e.type === 'ExecCreated' || e.type === 'ExecRequested') {
      this.streams.set(e.stream, {
        sandboxId: String(d.sandboxId),
        containerId: String(d.containerId),
        execId: String(d.execId),
      });
    }
    const ref = this.streams.get(e.stream);
    if (!ref) return;
    const task = this.tasks.byRef(ref.sandboxId, ref.containerId);
    if (!task) return;
    const at = Date.parse(e.at);
    const ns = task.namespace;
    const out = (type: TaskEvent['type'], value: Record<string, unknown>, ready?: Promise<unknown>) =>
      this.publisher.publish({ type, namespace: ns, value, at, ...(ready ? { ready } : {}) });
    const ts = { seconds: Math.floor(at / 1000), nanos: (at % 1000) * 1e6 };

    if (ref.execId === '') {
      const p = task.init;
      switch (e.type) {
        case 'ContainerCreated':
          p.pid = Number(d.pid ?? p.pid);
          out('containerd.events.TaskCreate', {
            containerId: task.id,
            bundle: task.bundle,
            rootfs: task.rootfs,
            io: {
              stdin: p.paths.stdin,
              stdout: p.paths.stdout,
              stderr: p.paths.stderr,
              terminal: p.paths.terminal,
            },
            checkpoint: '',
            pid: p.pid,
          });
          return;
        case 'ContainerStarted':
          out('containerd.events.TaskStart', { containerId: task.id, pid: p.pid });
          return;
        case 'ContainerPaused':
          out('containerd.events.TaskPaused', { containerId: task.id });
          return;
        case 'ContainerResumed':
          out('containerd.events.TaskResumed', { containerId: task.id });
          return;
        case 'ContainerOomKilled':
          out('containerd.events.TaskOOM', { containerId: task.id });
          return;
        case 'ContainerExited':
        case 'ContainerExitedWhileDown': {
          p.exit = { status: exitStatusOf(d as { exitCode: number; signal?: string }, signals), at };
          out(
            'containerd.events.TaskExit',
            { containerId: task.id, id: task.id, pid: p.pid, exitStatus: p.exit.status, exitedAt: ts },
            drained(p),
          );
          return;
        }
        case 'ContainerDeleted':
          out('containerd.events.TaskDelete', {
            containerId: task.id,
            pid: p.pid,
            exitStatus: p.exit?.status ?? 0,
            exitedAt: p.exit
              ? { seconds: Math.floor(p.exit.at / 1000), nanos: (p.exit.at % 1000) * 1e6 }
              : ts,
            id: '',
          });
          this.forget(e.stream);
          if (task.deleted) this.tasks.remove(task);
          return;
        default:
          return;
      }
    }
    const p = task.execs.get(ref.execId);
    if (!p) return;
    switch (e.type) {
      case 'ExecCreated':
        out('containerd.events.TaskExecAdded', { containerId: task.id, execId: p.execId });
        return;
      case 'ExecStarted':
        p.pid = Number(d.pid ?? p.pid);
        out('containerd.events.TaskExecStarted', { containerId: task.id, execId: p.execId, pid: p.pid });
        return;
      case 'ProcessExited':
      case 'ProcessExitedWhileDaemonDown':
        p.exit = { status: exitStatusOf(d as { exitCode: number; signal?: string }, signals), at };
        out(
          'containerd.events.TaskExit',
          { containerId: task.id, id: p.execId, pid: p.pid, exitStatus: p.exit.status, exitedAt: ts },
          drained(p),
        );
        return;
      case 'ExecDeleted':
        this.forget(e.stream);
        return;
      default:
        return;
    }
  }

  private forget(stream: string): void {
    this.streams.delete(stream);
  }
}
