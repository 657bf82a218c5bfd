// The Task service (containerd.task.v2.Task), init-process side: Create, Start, State, Kill, Pause, Resume,
// Pids, Stats, Update, Wait, Delete, Connect, Shutdown, Checkpoint. Every call is a sandboxd API call;
// exec-process calls are in service-exec.ts.
import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import type { Logger } from 'pino';
import type { ApiClient } from '../api/index.js';
import { type CallContext, Code, type Handler, TtrpcError } from '../ttrpc/index.js';
import type { ApiLink } from './connection.js';
import { invalid, notFound, notImplemented } from './errdefs.js';
import { dropSpecHostname, guestHostnameOf, hostnameWithoutUts } from './host-uts.js';
import { makeMountTargets, type SpecMount } from './mount-targets.js';
import {
  containerIdFor,
  LABEL_NAMESPACE,
  LABEL_OWNER,
  LABEL_TASK,
  podSandboxIdFor,
  sandboxIdFor,
} from './naming.js';
import { limitsOfSpec } from './pod-resize.js';
import { decode, encode, packAny, TASK_SERVICE } from './protos.js';
import { type MountSpec, mountRootfs, unmountRootfs } from './rootfs.js';
import { podSizeOf } from './sizing.js';
import { Stdio } from './stdio.js';
import type { Proc, Task, TaskTable } from './tasks.js';

export interface ShimContext {
  api(): Promise<ApiClient>;
  /** The link behind api(): stdio follows resume on its reconnects. */
  readonly link: ApiLink;
  readonly tasks: TaskTable;
  readonly log: Logger;
  /** Called after Shutdown answered when no task remains. */
  requestExit(): void;
}

const STATUS = { UNKNOWN: 0, CREATED: 1, RUNNING: 2, STOPPED: 3, PAUSED: 4, PAUSING: 5 } as const;

export const CRI_CONTAINER_TYPE = 'io.kubernetes.cri.container-type';
export const CRI_SANDBOX_ID = 'io.kubernetes.cri.sandbox-id';

export function namespaceOf(ctx: CallContext): string {
  return ctx.metadata['containerd-namespace-ttrpc']?.[0] ?? 'default';
}

export function ts(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

/** A handler of one Task method: the request decoded, the response encoded with containerd's types. */
export function unary<Req>(
  method: string,
  fn: (req: Req, ctx: CallContext) => Promise<Record<string, unknown>>,
): Handler {
  return async (payload, ctx) => {
    const { requestType, responseType } = methodTypes(method);
    const req = decode<Req>(requestType, payload);
    return encode(responseType, await fn(req, ctx));
  };
}

function methodTypes(method: string): { requestType: string; responseType: string } {
  const names: Record<string, [string, string]> = {
    State: ['StateRequest', 'StateResponse'],
    Create: ['CreateTaskRequest', 'CreateTaskResponse'],
    Start: ['StartRequest', 'StartResponse'],
    Delete: ['DeleteRequest', 'DeleteResponse'],
    Pids: ['PidsRequest', 'PidsResponse'],
    Pause: ['PauseRequest', 'google.protobuf.Empty'],
    Resume: ['ResumeRequest', 'google.protobuf.Empty'],
    Checkpoint: ['CheckpointTaskRequest', 'google.protobuf.Empty'],
    Kill: ['KillRequest', 'google.protobuf.Empty'],
    Exec: ['ExecProcessRequest', 'google.protobuf.Empty'],
    ResizePty: ['ResizePtyRequest', 'google.protobuf.Empty'],
    CloseIO: ['CloseIORequest', 'google.protobuf.Empty'],
    Update: ['UpdateTaskRequest', 'google.protobuf.Empty'],
    Wait: ['WaitRequest', 'WaitResponse'],
    Stats: ['StatsRequest', 'StatsResponse'],
    Connect: ['ConnectRequest', 'ConnectResponse'],
    Shutdown: ['ShutdownRequest', 'google.protobuf.Empty'],
  };
  const [a, b] = names[method] ?? [];
  if (!a || !b) throw notImplemented(method);
  const q = (n: string) => (n.includes('.') ? n : `containerd.task.v2.${n}`);
  return { requestType: q(a), responseType: q(b) };
}

export function taskOf(shim: ShimContext, ctx: CallContext, id: string): Task {
  const t = shim.tasks.get(namespaceOf(ctx), id);
  if (!t) throw notFound(`task ${id}`);
  return t;
}

export function procOf(shim: ShimContext, ctx: CallContext, id: string, execId: string): Proc {
  const t = taskOf(shim, ctx, id);
  if (!execId) return t.init;
  const p = t.execs.get(execId);
  if (!p) throw notFound(`exec ${execId} of task ${id}`);
  return p;
}

interface CreateReq {
  id: string;
  bundle: string;
  rootfs: MountSpec[];
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
  checkpoint: string;
}

interface BundleSpec {
  annotations?: Record<string, string>;
  hostname?: string;
  root?: { path?: string; readonly?: boolean };
  mounts?: SpecMount[];
  linux?: {
    namespaces?: { type?: string; path?: string }[];
    resources?: { memory?: { limit?: number }; cpu?: { quota?: number; period?: number } };
  };
}

type SandboxNetwork = 'none' | 'user' | { mode: 'netns'; path: string };

/**
 * The VM's network from the task's spec. A network namespace joined by path (CRI's pod sandbox: the one CNI
 * wired; `ctr run --with-ns`) becomes the VM's, so the pod's containers see its veth, addresses and routes. No
 * network namespace at all is the host's network (a hostNetwork pod): a VM cannot join the node's namespace,
 * so it gets QEMU's user-mode NAT, outbound to whatever the node reaches. A new, empty one: loopback only.
 */
function networkOf(spec: BundleSpec): SandboxNetwork {
  const ns = spec.linux?.namespaces?.find((n) => n.type === 'network');
  if (ns === undefined) return 'user';
  return ns.path ? { mode: 'netns', path: ns.path } : 'none';
}

async function create(shim: ShimContext, req: CreateReq, ctx: CallContext): Promise<Record<string, unknown>> {
  const ns = namespaceOf(ctx);
  if (shim.tasks.get(ns, req.id)) throw new TtrpcError(Code.AlreadyExists, `task ${req.id}: already exists`);
  if (req.checkpoint) throw notImplemented('create from a checkpoint');
  let spec: BundleSpec;
  try {
    spec = JSON.parse(await readFile(join(req.bundle, 'config.json'), 'utf8')) as BundleSpec;
  } catch (err) {
    throw invalid(`bundle ${req.bundle}: config.json: ${(err as Error).message}`);
  }
  const annotations = spec.annotations ?? {};
  const kind = annotations[CRI_CONTAINER_TYPE];
  const criSandbox = annotations[CRI_SANDBOX_ID];
  const joinsPod = kind === 'container' && criSandbox !== undefined;
  const sandboxId = joinsPod
    ? podSandboxIdFor(ns, criSandbox)
    : kind === 'sandbox'
      ? podSandboxIdFor(ns, req.id)
      : sandboxIdFor(ns, req.id);
  const containerId = containerIdFor(req.id);
  // Checked before anything changes: a bad sizing annotation fails the Create with nothing to undo.
  const size = joinsPod ? {} : podSizeOf(annotations);
  const api = await shim.api();
  const log = shim.log.child({ namespace: ns, task: req.id, sandboxId });
  const paths = { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal };
  const task: Task = {
    namespace: ns,
    id: req.id,
    bundle: req.bundle,
    sandboxId,
    containerId,
    ownsSandbox: !joinsPod,
    rootfs: req.rootfs as unknown as Record<string, unknown>[],
    rootfsMounted: false,
    init: undefined as unknown as Proc,
    execs: new Map(),
    deleted: false,
    limits: limitsOfSpec(spec.linux?.resources ?? {}),
  };
  (task as { init: Proc }).init = { task, execId: '', paths, pid: 0 };
  let added = false;
  let sandboxMade = false;
  let containerMade = false;
  // From here the Create itself holds the server up, however long the VM takes to boot (a reservation would
  // lapse under it after 60 s and the server exit mid-call: containerd saw 'ttrpc: closed').
  shim.tasks.beginCreate();
  try {
    task.rootfsMounted = await mountRootfs(req.bundle, req.rootfs);
    if (spec.root?.readonly) {
      const root = spec.root.path ?? 'rootfs';
      await makeMountTargets(isAbsolute(root) ? root : join(req.bundle, root), spec.mounts ?? []);
    }
    // A hostNetwork pod's hostname without a UTS namespace: the VM's own (see host-uts.ts).
    const nodeHostname = kind === undefined ? undefined : hostnameWithoutUts(spec);
    if (nodeHostname !== undefined) await dropSpecHostname(req.bundle);
    const guestHostname = nodeHostname === undefined ? undefined : guestHostnameOf(nodeHostname);
    if (task.ownsSandbox) {
      const network = networkOf(spec);
      await api.call('sandbox.create', {
        id: sandboxId,
        config: {
          labels: { [LABEL_NAMESPACE]: ns, [LABEL_TASK]: req.id.slice(0, 4096), [LABEL_OWNER]: 'containerd' },
          ...size,
          ...(network === 'none' ? {} : { network }),
          ...(guestHostname === undefined ? {} : { hostname: guestHostname }),
        },
      });
      sandboxMade = true;
      await api.call('sandbox.start', { id: sandboxId });
    }
    shim.tasks.add(task);
    added = true;
    const view = await api.call<{ pid?: number }>('container.create', {
      sandboxId,
      id: containerId,
      bundle: req.bundle,
    });
    containerMade = true;
    task.init.pid = view.pid ?? 0;
    task.init.io = await Stdio.attach(shim.link, { sandboxId, containerId, execId: '' }, paths, log);
    log.info({ pid: task.init.pid }, 'task created');
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'create failed: undoing');
    task.init.io?.close();
    if (added) shim.tasks.remove(task);
    if (containerMade)
      await api.call('container.delete', { sandboxId, id: containerId, force: true }).catch(() => undefined);
    if (sandboxMade) await api.call('sandbox.delete', { id: sandboxId, force: true }).catch(() => undefined);
    if (task.rootfsMounted || req.rootfs.length > 0) await unmountRootfs(req.bundle).catch(() => undefined);
    shim.tasks.endCreate();
    if (shim.tasks.idle) shim.requestExit();
    throw err;
  }
  shim.tasks.endCreate();
  return { pid: task.init.pid };
}

function statusOf(state: string): number {
  switch (state) {
    case 'created':
      return STATUS.CREATED;
    case 'starting':
    case 'running':
      return STATUS.RUNNING;
    case 'pausing':
      return STATUS.PAUSING;
    case 'paused':
      return STATUS.PAUSED;
    case 'stopped':
    case 'exited':
    case 'failed':
    case 'deleted':
      return STATUS.STOPPED;
    default:
      return STATUS.UNKNOWN;
  }
}

export function initHandlers(shim: ShimContext): Record<string, Handler> {
  const api = () => shim.api();
  const ref = (t: Task) => ({ sandboxId: t.sandboxId, id: t.containerId });
  return {
    Create: unary<CreateReq>('Create', (req, ctx) => create(shim, req, ctx)),
    State: unary<{ id: string; execId: string }>('State', async (req, ctx) => {
      const p = procOf(shim, ctx, req.id, req.execId);
      const t = p.task;
      const view = p.execId
        ? await (await api()).call<{ state: string; pid?: number; exit?: { exitCode: number } }>(
            'exec.state',
            {
              sandboxId: t.sandboxId,
              containerId: t.containerId,
              execId: p.execId,
            },
          )
        : await (await api()).call<{ state: string; pid?: number; exit?: { exitCode: number } }>(
            'container.state',
            ref(t),
          );
      return {
        id: p.execId || t.id,
        bundle: t.bundle,
        pid: view.pid ?? p.pid,
        status: statusOf(view.state),
        stdin: p.paths.stdin,
        stdout: p.paths.stdout,
        stderr: p.paths.stderr,
        terminal: p.paths.terminal,
        exitStatus: p.exit?.status ?? view.exit?.exitCode ?? 0,
        exitedAt: p.exit ? ts(p.exit.at) : ts(0),
        execId: p.execId,
      };
    }),
    Start: unary<{ id: string; execId: string }>('Start', async (req, ctx) => {
      const p = procOf(shim, ctx, req.id, req.execId);
      const t = p.task;
      if (!p.execId) {
        const v = await (await api()).call<{ pid?: number }>('container.start', ref(t));
        p.pid = v.pid ?? p.pid;
      } else {
        const v = await (await api()).call<{ pid?: number }>('exec.start', {
          sandboxId: t.sandboxId,
          containerId: t.containerId,
          execId: p.execId,
        });
        p.pid = v.pid ?? p.pid;
      }
      return { pid: p.pid };
    }),
    Pause: unary<{ id: string }>('Pause', async (req, ctx) => {
      await (await api()).call('container.pause', ref(taskOf(shim, ctx, req.id)));
      return {};
    }),
    Resume: unary<{ id: string }>('Resume', async (req, ctx) => {
      await (await api()).call('container.resume', ref(taskOf(shim, ctx, req.id)));
      return {};
    }),
    Pids: unary<{ id: string }>('Pids', async (req, ctx) => {
      const list = await (await api()).call<{ pid: number }[]>(
        'container.ps',
        ref(taskOf(shim, ctx, req.id)),
      );
      return { processes: list.map((p) => ({ pid: p.pid })) };
    }),
    Stats: unary<{ id: string }>('Stats', async (req, ctx) => {
      const s = await (await api()).call<{
        cpuUsageUsec: number;
        memoryUsageBytes: number;
        memoryLimitBytes?: number;
        pids: number;
        ioReadBytes: number;
        ioWriteBytes: number;
      }>('container.stats', ref(taskOf(shim, ctx, req.id)));
      const metrics = {
        pids: { current: s.pids },
        cpu: { usageUsec: s.cpuUsageUsec },
        memory: { usage: s.memoryUsageBytes, usageLimit: s.memoryLimitBytes ?? 0 },
        io: { usage: [{ rbytes: s.ioReadBytes, wbytes: s.ioWriteBytes }] },
      };
      return { stats: packAny('io.containerd.cgroups.v2.Metrics', metrics) };
    }),
    Checkpoint: unary<{ id: string }>('Checkpoint', async () => {
      throw notImplemented('checkpoint');
    }),
    Connect: unary<{ id: string }>('Connect', async (req, ctx) => {
      const t = taskOf(shim, ctx, req.id);
      return { shimPid: process.pid, taskPid: t.init.pid, version: '' };
    }),
    Shutdown: unary<{ id: string; now: boolean }>('Shutdown', async () => {
      if (shim.tasks.idle) shim.requestExit();
      return {};
    }),
  };
}

export { TASK_SERVICE };
