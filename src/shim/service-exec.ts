// The Task service, the calls that act on a given process (init or exec): Exec, Kill, ResizePty, CloseIO,
// Wait, Delete, and Update of the task's resources.
import { readFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { join } from 'node:path';
import { DaemonUnreachable } from '../api/index.js';
import { type ApiProcess, apiProcessOf, type OciProcess } from '../bundle/index.js';
import type { Handler } from '../ttrpc/index.js';
import { Code, TtrpcError } from '../ttrpc/index.js';
import { invalid, notFound } from './errdefs.js';
import { growth, limitsAfter, limitsOfSpec, NO_LIMITS, podNeeds, type VmSize } from './pod-resize.js';
import { resourcesOf } from './resources.js';
import { unmountRootfs } from './rootfs.js';
import { procOf, type ShimContext, taskOf, ts, unary } from './service.js';
import { Stdio } from './stdio.js';
import { exitStatusOf, type Proc } from './tasks.js';

const signals = constants.signals as unknown as Record<string, number>;

/** The sandboxd process of an OCI runtime-spec Process (the Any containerd sends is its JSON). */
function processOf(spec: OciProcess, terminal: boolean): ApiProcess {
  if (!spec.args || spec.args.length === 0) throw invalid('spec.args: is required');
  return apiProcessOf({ ...spec, args: spec.args, terminal });
}

/** The resources of the task's bundle spec (what an update leaves as it is needs no applying). */
async function bundleResources(bundle: string): Promise<Record<string, unknown>> {
  try {
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as {
      linux?: { resources?: Record<string, unknown> };
    };
    return spec.linux?.resources ?? {};
  } catch {
    return {};
  }
}

/**
 * sandboxd's wait for `p`, asked again on the new connection when the daemon restarts meanwhile: a
 * containerd Wait outlives a sandboxd restart (its exit comes from the log, not from the connection).
 */
async function waitThroughRestarts(
  shim: ShimContext,
  p: Proc,
): Promise<{ exitCode: number; signal?: string }> {
  const ref = { sandboxId: p.task.sandboxId, containerId: p.task.containerId };
  for (;;) {
    const client = await shim.api();
    try {
      return p.execId
        ? await client.call('exec.wait', { ...ref, execId: p.execId })
        : await client.call('container.wait', { sandboxId: ref.sandboxId, id: ref.containerId });
    } catch (err) {
      if (!(err instanceof DaemonUnreachable)) throw err;
      shim.log.info({ task: p.task.id, execId: p.execId }, 'sandboxd went away during a wait: asking again');
    }
  }
}

export function processHandlers(shim: ShimContext): Record<string, Handler> {
  const api = () => shim.api();
  const refOf = (p: Proc) => ({
    sandboxId: p.task.sandboxId,
    containerId: p.task.containerId,
    execId: p.execId,
  });
  return {
    Exec: unary<{
      id: string;
      execId: string;
      terminal: boolean;
      stdin: string;
      stdout: string;
      stderr: string;
      spec?: { type_url: string; value: Buffer };
    }>('Exec', async (req, ctx) => {
      const t = taskOf(shim, ctx, req.id);
      if (!req.execId) throw invalid('exec_id: is required');
      if (t.execs.has(req.execId))
        throw new TtrpcError(Code.AlreadyExists, `exec ${req.execId}: already exists`);
      let spec: OciProcess;
      try {
        spec = JSON.parse(req.spec?.value.toString('utf8') ?? '{}') as OciProcess;
      } catch (err) {
        throw invalid(`spec: not an OCI process: ${(err as Error).message}`);
      }
      const paths = { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal };
      const p: Proc = { task: t, execId: req.execId, paths, pid: 0 };
      t.execs.set(req.execId, p);
      const client = await api();
      try {
        await client.call('exec.create', { ...refOf(p), process: processOf(spec, req.terminal) });
        p.io = await Stdio.attach(
          shim.link,
          refOf(p),
          paths,
          shim.log.child({ task: t.id, execId: p.execId }),
        );
      } catch (err) {
        t.execs.delete(req.execId);
        p.io?.close();
        await client.call('exec.delete', refOf(p)).catch(() => undefined);
        throw err;
      }
      return {};
    }),
    Kill: unary<{ id: string; execId: string; signal: number; all: boolean }>('Kill', async (req, ctx) => {
      const p = procOf(shim, ctx, req.id, req.execId);
      const client = await api();
      try {
        if (p.execId) await client.call('exec.kill', { ...refOf(p), signal: req.signal || 15 });
        else
          await client.call('container.kill', {
            sandboxId: p.task.sandboxId,
            id: p.task.containerId,
            signal: req.signal || 15,
            ...(req.all ? { all: true } : {}),
          });
      } catch (err) {
        // containerd reads "process already finished" as NotFound (errdefs), not as a failure.
        if ((err as { kind?: string }).kind === 'InvalidState' && p.exit)
          throw notFound(`process ${p.execId || p.task.id} already finished`);
        throw err;
      }
      return {};
    }),
    ResizePty: unary<{ id: string; execId: string; width: number; height: number }>(
      'ResizePty',
      async (req, ctx) => {
        const p = procOf(shim, ctx, req.id, req.execId);
        // ctr sends its own terminal's size, 0x0 when that terminal never had one (script(1), a CI pty):
        // legal for a tty (runc's shim applies it), nothing sandboxd's resize can express; the size stays.
        if (req.width === 0 || req.height === 0) return {};
        await (await api()).call('exec.resize', { ...refOf(p), rows: req.height, cols: req.width });
        return {};
      },
    ),
    CloseIO: unary<{ id: string; execId: string; stdin: boolean }>('CloseIO', async (req, ctx) => {
      const p = procOf(shim, ctx, req.id, req.execId);
      if (req.stdin) {
        if (p.io) await p.io.closeStdin();
        else await (await api()).call('exec.closeStdin', refOf(p));
      }
      return {};
    }),
    Update: unary<{ id: string; resources?: { type_url: string; value: Buffer } }>(
      'Update',
      async (req, ctx) => {
        const t = taskOf(shim, ctx, req.id);
        let r: Record<string, unknown>;
        try {
          r = JSON.parse(req.resources?.value.toString('utf8') || '{}') as Record<string, unknown>;
        } catch (err) {
          throw invalid(`resources: not OCI LinuxResources: ${(err as Error).message}`);
        }
        const bundle = await bundleResources(t.bundle);
        const resources = resourcesOf(r, bundle);
        // Only members the bundle already had: nothing to apply (sandboxd refuses an empty update).
        if (Object.keys(resources).length === 0) return {};
        const client = await api();
        const limits = limitsAfter(
          t.limits ?? limitsOfSpec(bundle),
          resources,
          (bundle as { cpu?: { period?: number } }).cpu?.period ?? 0,
        );
        if (!t.ownsSandbox) {
          // A pod's container: its VM first grows to hold the pod's limits, then the limit is applied.
          const pod = [...shim.tasks.siblings(t).filter((s) => !s.ownsSandbox), t];
          const need = podNeeds(pod.map((s) => (s === t ? limits : (s.limits ?? NO_LIMITS))));
          const now = await client.call<VmSize>('sandbox.status', { id: t.sandboxId });
          const grow = growth(now, need);
          if (grow) await client.call('sandbox.update', { id: t.sandboxId, ...grow });
        }
        await client.call('container.update', {
          sandboxId: t.sandboxId,
          id: t.containerId,
          resources,
        });
        t.limits = limits;
        return {};
      },
    ),
    Wait: unary<{ id: string; execId: string }>('Wait', async (req, ctx) => {
      const p = procOf(shim, ctx, req.id, req.execId);
      const exit = await waitThroughRestarts(shim, p);
      // The answer means "all of it was written": output first, as containerd's clients expect.
      if (p.io) await p.io.drained;
      const status = p.exit?.status ?? exitStatusOf(exit, signals);
      const at = p.exit?.at ?? Date.now();
      p.exit ??= { status, at };
      return { exitStatus: status, exitedAt: ts(at) };
    }),
    Delete: unary<{ id: string; execId: string }>('Delete', async (req, ctx) => {
      const p = procOf(shim, ctx, req.id, req.execId);
      const t = p.task;
      const client = await api();
      if (p.execId) {
        const r = await client.call<{ exit?: { exitCode: number; signal?: string } }>(
          'exec.delete',
          refOf(p),
        );
        p.io?.close();
        t.execs.delete(p.execId);
        const status = p.exit?.status ?? (r.exit ? exitStatusOf(r.exit, signals) : 0);
        return { pid: p.pid, exitStatus: status, exitedAt: ts(p.exit?.at ?? Date.now()) };
      }
      const r = await client.call<{ exit?: { exitCode: number; signal?: string } }>('container.delete', {
        sandboxId: t.sandboxId,
        id: t.containerId,
      });
      t.deleted = true;
      for (const e of t.execs.values()) e.io?.close();
      t.init.io?.close();
      const status = p.exit?.status ?? (r.exit ? exitStatusOf(r.exit, signals) : 0);
      p.exit ??= { status, at: Date.now() };
      if (t.ownsSandbox && shim.tasks.siblings(t).length === 0) {
        await client.call('sandbox.delete', { id: t.sandboxId, force: true }).catch((err: Error) => {
          shim.log.warn({ sandboxId: t.sandboxId, err: err.message }, 'sandbox delete failed');
        });
      }
      if (t.rootfsMounted) await unmountRootfs(t.bundle);
      shim.log.info({ namespace: t.namespace, task: t.id, exitStatus: status }, 'task deleted');
      return { pid: p.pid, exitStatus: status, exitedAt: ts(p.exit.at) };
    }),
  };
}
