// The API's method table: name, params schema, result, when legal, handler. It is also the source of docs/api.md.
import type { Observable, Subscription } from 'rxjs';
import { z } from 'zod';
import { type Runtime, withDeadline } from '../actors/index.js';
import type { EventEnvelope } from '../events/index.js';
import type { Accel } from '../hypervisor/index.js';
import type { OutputKeeper } from '../logs/index.js';
import type { EventStore, VerifyReport } from '../store/index.js';
import { type ApiTraffic, renderMetrics } from './metrics.js';
import { followOutput, readOutput } from './output.js';
import {
  absolutePathSchema,
  base64Schema,
  cidrSchema,
  execIdSchema,
  idSchema,
  ipAddressSchema,
  isoTimeSchema,
  mountsSchema,
  processSchema,
  resourcesSchema,
  sandboxConfigSchema,
  signalSchema,
} from './schemas.js';

/** The part of the event store the API reads (never writes). */
export type EventLogReader = Pick<
  EventStore,
  'readAll' | 'readStream' | 'listStreams' | 'lastSeq' | 'verify' | 'stats'
>;

/** One event the machines would not have allowed (from the machines' checkTransitions). */
export interface TransitionProblem {
  readonly seq: number;
  readonly stream: string;
  readonly type: string;
  readonly message: string;
}

/** A live feed the connection forwards as notifications until it ends, the client cancels, or it is dropped. */
export interface SubscriptionSpec {
  /** 'events' | 'output': shown in the drop notice. */
  readonly kind: string;
  /**
   * Starts the feed. `emit(method, params)` sends one notification (params get `subscription`); it
   * returns false once the subscription was dropped (slow consumer). `end(method, params)` sends a
   * last notification and removes the subscription. Returns the teardown.
   */
  start(
    emit: (method: string, params: Record<string, unknown>) => boolean,
    end: (method: string, params: Record<string, unknown>) => void,
  ): () => void;
  /** Extra fields for the drop notice (e.g. the last delivered seq, to resume from). */
  noticeData?(): Record<string, unknown>;
}

/** What a handler may ask of the connection it serves. */
export interface ConnectionContext {
  readonly id: number;
  /** Registers a subscription bound to this connection; returns its id. */
  subscribe(spec: SubscriptionSpec): string;
  /** Ends a subscription of this connection; false when it has none by that id. */
  unsubscribe(id: string): boolean;
}

/** Static facts daemon.info reports. */
export interface DaemonFacts {
  readonly version: string;
  readonly pid: number;
  readonly startedAt: string;
  readonly stateDir?: string;
  readonly socket?: string;
}

export interface MethodContext {
  readonly runtime: Runtime;
  /** The hypervisor's accelerator (probed once), for daemon.info before any sandbox started. */
  readonly accel?: () => Promise<Accel>;
  readonly events: EventLogReader;
  readonly facts: DaemonFacts;
  readonly connection: ConnectionContext;
  readonly checkTransitions?: (events: readonly EventEnvelope[]) => readonly TransitionProblem[];
  /** The server's traffic counters, for daemon.metrics. */
  readonly traffic?: () => ApiTraffic;
  /** The host logs of every process's output (absent: output is read from the guest's buffer). */
  readonly logs?: OutputKeeper;
}

export interface MethodSpec<P extends z.ZodType = z.ZodType> {
  readonly name: string;
  readonly summary: string;
  /** When the call is legal / what it appends (Firecracker-style action docs). */
  readonly when?: string;
  readonly params: P;
  /** The result, in words (docs). */
  readonly result: string;
  handler(params: z.output<P>, ctx: MethodContext): unknown;
}

function method<P extends z.ZodType>(spec: MethodSpec<P>): MethodSpec<P> {
  // The runtime records which connection asked with the events a command appends (events explain).
  const handler: MethodSpec<P>['handler'] = (params, ctx) =>
    ctx.runtime.asking
      ? ctx.runtime.asking({ connection: ctx.connection.id }, () => spec.handler(params, ctx))
      : spec.handler(params, ctx);
  return { ...spec, handler };
}

const sandboxRef = z.strictObject({ id: idSchema });
const sandboxIdRef = z.strictObject({ sandboxId: idSchema });
const containerRef = z.strictObject({ sandboxId: idSchema, id: idSchema });
const execRef = { sandboxId: idSchema, containerId: idSchema, execId: execIdSchema };
const timeoutMsSchema = z.number().int().min(1).max(3_600_000);

/** sandbox.update: new totals, at least one (the same bounds sandbox.create allows). */
const sandboxUpdateParams = z
  .strictObject({
    id: idSchema,
    vcpus: z.number().int().min(1).max(64).optional(),
    memoryMiB: z.number().int().min(128).max(262144).optional(),
  })
  .refine((p) => p.vcpus !== undefined || p.memoryMiB !== undefined, {
    error: 'give vcpus, memoryMiB or both',
    path: ['vcpus'],
  });

const eventFilter = {
  stream: z.string().min(1).max(256).optional(),
  types: z.array(z.string().min(1).max(128)).max(64).optional(),
};

function matches(event: EventEnvelope, stream?: string, types?: readonly string[]): boolean {
  if (stream !== undefined && event.stream !== stream) return false;
  if (types !== undefined && types.length > 0 && !types.includes(event.type)) return false;
  return true;
}

/** Reads a page of events in seq order; `nextSeq` continues after the last one looked at. */
export async function readEventPage(
  log: EventLogReader,
  query: { fromSeq?: number; stream?: string; types?: readonly string[]; since?: string; limit?: number },
): Promise<{ events: EventEnvelope[]; nextSeq: number; lastSeq: number }> {
  const fromSeq = query.fromSeq ?? 1;
  const limit = query.limit ?? 1000;
  const since = query.since === undefined ? undefined : Date.parse(query.since);
  const events: EventEnvelope[] = [];
  let nextSeq = fromSeq;
  const source = query.stream !== undefined ? log.readStream(query.stream) : log.readAll(fromSeq);
  for await (const event of source) {
    if (event.seq < fromSeq) continue;
    nextSeq = event.seq + 1;
    if (since !== undefined && Date.parse(event.at) < since) continue;
    if (!matches(event, query.stream, query.types)) continue;
    events.push(event);
    if (events.length >= limit) break;
  }
  return { events, nextSeq, lastSeq: log.lastSeq() };
}

function countBy<T>(items: readonly T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

const b64 = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');

/** Collects an output stream until it completes or `ms` passes. */
function collect(source: Observable<Uint8Array>, ms: number): Promise<{ data: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let sub: Subscription | undefined;
    const timer = setTimeout(() => {
      sub?.unsubscribe();
      resolve({ data: Buffer.concat(chunks), complete: false });
    }, ms);
    sub = source.subscribe({
      next: (c) => chunks.push(Buffer.from(c)),
      error: (err) => {
        clearTimeout(timer);
        reject(err);
      },
      complete: () => {
        clearTimeout(timer);
        resolve({ data: Buffer.concat(chunks), complete: true });
      },
    });
  });
}

/** Every method the daemon serves, in docs order. */
export const methods = [
  method({
    name: 'daemon.info',
    summary:
      'Version, hypervisor mode (kvm/tcg), counts of sandboxes and containers by state, last event seq.',
    params: z.strictObject({}).optional(),
    result:
      '{ version, pid, startedAt, stateDir, socket, hypervisor: { mode }, sandboxes: { total, byState }, containers: { total, byState }, events: { lastSeq } }',
    handler: async (_p, { runtime, events, facts, accel }) => {
      const sandboxes = runtime.listSandboxes();
      const containers = sandboxes.flatMap((s) => safeContainers(runtime, s.id));
      const mode = runtime.accel ?? (accel ? await accel().catch(() => undefined) : undefined);
      return {
        ...facts,
        hypervisor: { mode: mode ?? 'unknown' },
        sandboxes: { total: sandboxes.length, byState: countBy(sandboxes, (s) => s.state) },
        containers: { total: containers.length, byState: countBy(containers, (c) => c.state) },
        events: { lastSeq: events.lastSeq() },
      };
    },
  }),

  method({
    name: 'daemon.metrics',
    summary:
      'Prometheus text: sandboxes and containers by state, transition durations (histogram) and stuck intents, the event log writer (appends, fsyncs), API requests by method, each VM’s host CPU and memory. Also served over HTTP with sandboxd --metrics-address.',
    params: z.strictObject({}).optional(),
    result: '{ metrics: string }',
    handler: async (_p, ctx) => ({ metrics: await renderMetrics(ctx) }),
  }),

  // Sandboxes
  method({
    name: 'sandbox.create',
    summary: 'Records a new sandbox (no VM yet).',
    when: 'id must be unused. Appends SandboxCreated.',
    params: z.strictObject({ id: idSchema, config: sandboxConfigSchema.optional() }),
    result: 'SandboxView { id, state: "created", config, containers, createdAt, version }',
    handler: (p, { runtime }) => runtime.createSandbox(p.id, p.config ?? {}),
  }),
  method({
    name: 'sandbox.start',
    summary: 'Boots the VM and connects to its agent; resolves once the sandbox runs.',
    when: 'created, stopped, failed or lost (a new VM; containers of the old one stay ended). starting → running, or failed with the error.',
    params: sandboxRef,
    result: 'SandboxView (state running, pid, accel)',
    handler: (p, { runtime }) => runtime.startSandbox(p.id),
  }),
  method({
    name: 'sandbox.stop',
    summary:
      "Stops the sandbox as docker stop does: SIGTERM to each running container's init, up to timeoutMs (default 10 s) for them to end, SIGKILL to the rest (each exit recorded as ContainerExited), then the VM's powerdown (quit, then SIGKILL, after timeoutMs again).",
    when: 'running or paused. stopping → stopped.',
    params: z.strictObject({ id: idSchema, timeoutMs: timeoutMsSchema.optional() }),
    result: 'SandboxView (state stopped)',
    handler: (p, { runtime }) =>
      runtime.stopSandbox(p.id, p.timeoutMs === undefined ? undefined : { timeoutMs: p.timeoutMs }),
  }),
  method({
    name: 'sandbox.pause',
    summary: 'Pauses the VM (QMP stop).',
    when: 'running → paused.',
    params: sandboxRef,
    result: 'SandboxView (state paused)',
    handler: (p, { runtime }) => runtime.pauseSandbox(p.id),
  }),
  method({
    name: 'sandbox.resume',
    summary: 'Resumes a paused VM (QMP cont).',
    when: 'paused → running.',
    params: sandboxRef,
    result: 'SandboxView (state running)',
    handler: (p, { runtime }) => runtime.resumeSandbox(p.id),
  }),
  method({
    name: 'sandbox.update',
    summary:
      "Grows a running sandbox's VM to vcpus vCPUs and memoryMiB MiB in total (hotplug; the guest agent onlines them).",
    when: 'running. Appends SandboxResizeRequested { vcpus, memoryMiB } (the totals asked), then SandboxResized (the totals the VM has) or, when a step failed, SandboxResized with what QEMU took (if anything) and SandboxResizeFailed; equal to now: nothing. Refused before anything is appended (InvalidArgument): above maxVcpus / maxMemoryMiB, smaller than now (no unplug), memory growth not a multiple of 128 MiB. No free DIMM slot (4): InvalidArgument, recorded as SandboxResizeFailed, nothing plugged.',
    params: sandboxUpdateParams,
    result: 'SandboxView (vcpus, memoryMiB: the new totals)',
    handler: (p, { runtime }) =>
      runtime.updateSandbox(p.id, {
        ...(p.vcpus === undefined ? {} : { vcpus: p.vcpus }),
        ...(p.memoryMiB === undefined ? {} : { memoryMiB: p.memoryMiB }),
      }),
  }),
  method({
    name: 'sandbox.delete',
    summary: 'Deletes a sandbox and its directory; force also stops a running one.',
    when: 'stopped, created, failed or lost (any state with force).',
    params: z.strictObject({ id: idSchema, force: z.boolean().optional() }),
    result: '{ id, deleted: true }',
    handler: async (p, { runtime }) => {
      await runtime.deleteSandbox(p.id, p.force === undefined ? undefined : { force: p.force });
      return { id: p.id, deleted: true };
    },
  }),
  method({
    name: 'sandbox.status',
    summary: "A sandbox's current view.",
    params: sandboxRef,
    result: 'SandboxView',
    handler: (p, { runtime }) => runtime.getSandbox(p.id),
  }),
  method({
    name: 'sandbox.list',
    summary: 'All sandboxes (not deleted), optionally only those in one state.',
    params: z.strictObject({ state: z.string().min(1).max(32).optional() }).optional(),
    result: 'SandboxView[]',
    handler: (p, { runtime }) => {
      const all = runtime.listSandboxes();
      return p?.state === undefined ? all : all.filter((s) => s.state === p.state);
    },
  }),
  method({
    name: 'sandbox.stats',
    summary:
      "The sandbox view, what its VM costs the host (QEMU's pid, CPU seconds, RSS, threads) and cgroup v2 stats of each container.",
    when: 'running.',
    params: sandboxRef,
    result:
      '{ sandbox: SandboxView, vm?: { pid, cpuSeconds, rssBytes, threads }, containers: { [id]: ContainerStats } }',
    handler: (p, { runtime }) => runtime.sandboxStats(p.id),
  }),

  // Containers
  method({
    name: 'container.create',
    summary:
      'Creates a container from an OCI bundle (copied into the sandbox share) without starting it. mounts bind host directories or files into it (through the share; unmounted when the container is deleted).',
    when: 'sandbox running; id unused in the sandbox; bundle an absolute path to a directory with a valid config.json; mount sources exist and stay clear of the state dir.',
    params: z.strictObject({
      sandboxId: idSchema,
      id: idSchema,
      bundle: absolutePathSchema,
      process: processSchema.optional(),
      resources: resourcesSchema.optional(),
      mounts: mountsSchema.optional(),
    }),
    result: 'ContainerView (state created, pid)',
    // The runtime checks the bundle and the mount sources (the state dir is its own): called at once, so the
    // create takes its id before a command that arrived after it on this connection runs.
    handler: (p, { runtime }) =>
      runtime.createContainer({
        sandboxId: p.sandboxId,
        id: p.id,
        bundle: p.bundle,
        ...(p.process ? { process: p.process } : {}),
        ...(p.resources ? { resources: p.resources } : {}),
        ...(p.mounts ? { mounts: p.mounts } : {}),
      }),
  }),
  method({
    name: 'container.start',
    summary: "Starts the container's init process.",
    when: 'created → running.',
    params: containerRef,
    result: 'ContainerView (state running)',
    handler: (p, { runtime }) => runtime.startContainer(p.sandboxId, p.id),
  }),
  method({
    name: 'container.kill',
    summary: 'Sends a signal to the init process (all: to every process of the container).',
    when: 'running or paused (a created container is refused with InvalidState: start or delete it).',
    params: z.strictObject({
      sandboxId: idSchema,
      id: idSchema,
      signal: signalSchema.optional(),
      all: z.boolean().optional(),
    }),
    result: '{ signalled: true }',
    handler: async (p, { runtime }) => {
      await runtime.killContainer(p.sandboxId, p.id, p.signal ?? 'SIGTERM', p.all);
      return { signalled: true };
    },
  }),
  method({
    name: 'container.delete',
    summary: 'Removes a container (force: kills it first).',
    when: 'created or stopped (any state with force).',
    params: z.strictObject({ sandboxId: idSchema, id: idSchema, force: z.boolean().optional() }),
    result: '{ id, deleted: true, exit?: ExitStatus, exitedAt? } (how and when its init ended)',
    handler: async (p, { runtime }) => {
      // How the init ended and when, as containerd's Delete reports it (none for a container that never ran,
      // nor for one a forced delete ended: that kill is not recorded as an exit).
      const after = await runtime.deleteContainer(
        p.sandboxId,
        p.id,
        p.force === undefined ? undefined : { force: p.force },
      );
      return {
        id: p.id,
        deleted: true,
        ...(after.exit ? { exit: after.exit } : {}),
        ...(after.exitedAt ? { exitedAt: after.exitedAt } : {}),
      };
    },
  }),
  method({
    name: 'container.state',
    summary: "A container's current view.",
    params: containerRef,
    result: 'ContainerView',
    handler: (p, { runtime }) => runtime.getContainer(p.sandboxId, p.id),
  }),
  method({
    name: 'container.list',
    summary: 'The containers of a sandbox.',
    params: sandboxIdRef,
    result: 'ContainerView[]',
    handler: (p, { runtime }) => runtime.listContainers(p.sandboxId),
  }),
  method({
    name: 'container.pause',
    summary: 'Freezes the container (cgroup freezer).',
    when: 'running → paused.',
    params: containerRef,
    result: 'ContainerView',
    handler: (p, { runtime }) => runtime.pauseContainer(p.sandboxId, p.id),
  }),
  method({
    name: 'container.resume',
    summary: 'Thaws a paused container.',
    when: 'paused → running.',
    params: containerRef,
    result: 'ContainerView',
    handler: (p, { runtime }) => runtime.resumeContainer(p.sandboxId, p.id),
  }),
  method({
    name: 'container.stats',
    summary: 'cgroup v2 stats of the container (cpu, memory, pids, io).',
    when: 'running or paused.',
    params: containerRef,
    result: 'ContainerStats',
    handler: (p, { runtime }) => runtime.containerStats(p.sandboxId, p.id),
  }),
  method({
    name: 'container.update',
    summary: "Changes the container's resource limits.",
    when: 'created, running or paused.',
    params: z.strictObject({ sandboxId: idSchema, id: idSchema, resources: resourcesSchema }),
    result: 'ContainerView',
    handler: (p, { runtime }) => runtime.updateContainer(p.sandboxId, p.id, p.resources),
  }),
  method({
    name: 'container.ps',
    summary: 'Processes running in the container.',
    when: 'running or paused.',
    params: containerRef,
    result: 'ProcessInfo[] { pid, user?, command }',
    handler: (p, { runtime }) => runtime.containerPs(p.sandboxId, p.id),
  }),
  method({
    name: 'container.wait',
    summary: "Resolves with the init process's exit status once it ended (timeoutMs: Timeout error instead).",
    params: z.strictObject({ sandboxId: idSchema, id: idSchema, timeoutMs: timeoutMsSchema.optional() }),
    result: 'ExitStatus { exitCode, signal?, oomKilled? }',
    handler: (p, { runtime }) =>
      withDeadline(
        runtime.waitContainer(p.sandboxId, p.id),
        p.timeoutMs,
        `container.wait ${p.sandboxId}/${p.id}`,
      ),
  }),

  // Execs
  method({
    name: 'exec.start',
    summary:
      'Runs an extra process in a running container: a new exec with process, or (no process) the one exec.create registered.',
    when: 'container running; with process: execId unused in the container; without: the exec is created (registered).',
    params: z.strictObject({
      sandboxId: idSchema,
      containerId: idSchema,
      execId: idSchema,
      process: processSchema.optional(),
    }),
    result: 'ExecView (state running, pid)',
    handler: (p, { runtime }) => runtime.startExec(p.sandboxId, p.containerId, p.execId, p.process),
  }),
  method({
    name: 'exec.create',
    summary:
      "Registers an extra process without starting it (containerd's Exec before its Start); exec.start starts it.",
    when: 'container running; execId unused in the container (a deleted exec id may be used again).',
    params: z.strictObject({
      sandboxId: idSchema,
      containerId: idSchema,
      execId: idSchema,
      process: processSchema,
    }),
    result: 'ExecView (state created)',
    handler: (p, { runtime }) => runtime.createExec(p.sandboxId, p.containerId, p.execId, p.process),
  }),
  method({
    name: 'exec.delete',
    summary:
      'Forgets an exec that is not running (exited, failed, or never started); its id may be used again.',
    when: 'exec created, exited or failed.',
    params: z.strictObject({ sandboxId: idSchema, containerId: idSchema, execId: idSchema }),
    result: '{ id, deleted: true, exit?: ExitStatus }',
    handler: async (p, { runtime }) => {
      const { exit } = runtime.getExec(p.sandboxId, p.containerId, p.execId);
      await runtime.deleteExec(p.sandboxId, p.containerId, p.execId);
      return { id: p.execId, deleted: true, ...(exit ? { exit } : {}) };
    },
  }),
  method({
    name: 'exec.state',
    summary: "An exec's current view.",
    params: z.strictObject({ sandboxId: idSchema, containerId: idSchema, execId: idSchema }),
    result: 'ExecView',
    handler: (p, { runtime }) => runtime.getExec(p.sandboxId, p.containerId, p.execId),
  }),
  method({
    name: 'exec.wait',
    summary: "Resolves with the exec's exit status once it ended (timeoutMs: Timeout error instead).",
    params: z.strictObject({
      sandboxId: idSchema,
      containerId: idSchema,
      execId: idSchema,
      timeoutMs: timeoutMsSchema.optional(),
    }),
    result: 'ExitStatus',
    handler: (p, { runtime }) =>
      withDeadline(
        runtime.waitExec(p.sandboxId, p.containerId, p.execId),
        p.timeoutMs,
        `exec.wait ${p.sandboxId}/${p.containerId}/${p.execId}`,
      ),
  }),
  method({
    name: 'exec.kill',
    summary: 'Sends a signal to an exec.',
    when: 'running.',
    params: z.strictObject({
      sandboxId: idSchema,
      containerId: idSchema,
      execId: idSchema,
      signal: signalSchema.optional(),
    }),
    result: '{ signalled: true }',
    handler: async (p, { runtime }) => {
      await runtime.killExec(p.sandboxId, p.containerId, p.execId, p.signal ?? 'SIGTERM');
      return { signalled: true };
    },
  }),
  method({
    name: 'exec.resize',
    summary: "Resizes an exec's terminal.",
    when: 'running, started with terminal: true.',
    params: z.strictObject({
      ...execRef,
      rows: z.number().int().min(1).max(10000),
      cols: z.number().int().min(1).max(10000),
    }),
    result: '{ resized: true }',
    handler: async (p, { runtime }) => {
      await runtime.resizeExec(p.sandboxId, p.containerId, p.execId, p.rows, p.cols);
      return { resized: true };
    },
  }),
  method({
    name: 'exec.output',
    summary:
      "Output of a process (execId '' = the container's init), from its host log (CRI format, kept until the container or exec is deleted; see README \"Logs\"). Without follow: what the log holds (waiting up to timeoutMs, default 1000, for a running process to end); `complete` says whether the process's output is all there, `next` is the log offset to go on from. since (RFC3339) and tail (last N lines) filter; timestamps gives `records` [{ time, stream, data (base64), partial?, marker? }] instead of one blob per stream; a marker record says how many bytes the guest dropped while nobody read. With follow: a subscription from `offset` (default the start; a previous `next` to resume); `exec.output` notifications { subscription, stream, data (base64), time, next } then one `exec.outputEnd` { subscription, stream, error? } per stream once the log ends.",
    params: z.strictObject({
      ...execRef,
      stream: z.enum(['stdout', 'stderr', 'both']).optional(),
      follow: z.boolean().optional(),
      timeoutMs: timeoutMsSchema.optional(),
      since: isoTimeSchema.optional(),
      tail: z.number().int().min(0).optional(),
      offset: z.number().int().min(0).optional(),
      timestamps: z.boolean().optional(),
    }),
    result:
      'without follow: { stdout?: base64, stderr?: base64 (or records with timestamps), complete, next, skipped? }; with follow: { subscription }',
    handler: async (p, { runtime, connection, logs }) => {
      const which = p.stream ?? 'both';
      const streams: ('stdout' | 'stderr')[] = which === 'both' ? ['stdout', 'stderr'] : [which];
      // Asking for a process that does not exist fails now, not in the feed.
      if (p.execId === '') runtime.getContainer(p.sandboxId, p.containerId);
      else runtime.getExec(p.sandboxId, p.containerId, p.execId);
      if (logs) {
        const params = { ...p, streams, timeoutMs: p.timeoutMs ?? 1000 };
        if (!p.follow) return readOutput(logs, params);
        return { subscription: connection.subscribe(followOutput(logs, params)) };
      }
      if (!p.follow) {
        const parts = await Promise.all(
          streams.map((s) =>
            collect(runtime.output(p.sandboxId, p.containerId, p.execId, s), p.timeoutMs ?? 1000),
          ),
        );
        const out: Record<string, unknown> = { complete: parts.every((x) => x.complete) };
        streams.forEach((s, i) => {
          out[s] = parts[i]!.data.toString('base64');
        });
        return out;
      }
      const subscription = connection.subscribe({
        kind: 'output',
        start: (emit, end) => {
          let open = streams.length;
          const subs = streams.map((s) =>
            runtime.output(p.sandboxId, p.containerId, p.execId, s).subscribe({
              next: (chunk) => {
                emit('exec.output', { stream: s, data: b64(chunk) });
              },
              error: (err: unknown) => {
                open--;
                const message = err instanceof Error ? err.message : String(err);
                if (open === 0) end('exec.outputEnd', { stream: s, error: message });
                else emit('exec.outputEnd', { stream: s, error: message });
              },
              complete: () => {
                open--;
                if (open === 0) end('exec.outputEnd', { stream: s });
                else emit('exec.outputEnd', { stream: s });
              },
            }),
          );
          return () => {
            for (const sub of subs) sub.unsubscribe();
          };
        },
      });
      return { subscription };
    },
  }),
  method({
    name: 'exec.writeStdin',
    summary: "Writes bytes (base64) to a process's stdin (execId '' = init).",
    when: 'running.',
    params: z.strictObject({ ...execRef, data: base64Schema }),
    result: '{ written: number }',
    handler: async (p, { runtime }) => ({
      written: await runtime.writeStdin(p.sandboxId, p.containerId, p.execId, Buffer.from(p.data, 'base64')),
    }),
  }),
  method({
    name: 'exec.closeStdin',
    summary: "Closes a process's stdin (EOF).",
    when: 'running.',
    params: z.strictObject(execRef),
    result: '{ closed: true }',
    handler: async (p, { runtime }) => {
      await runtime.closeStdin(p.sandboxId, p.containerId, p.execId);
      return { closed: true };
    },
  }),

  // Events
  method({
    name: 'events.read',
    summary:
      'A page of durable events in seq order from fromSeq (default 1), filtered by stream, types and time (since). Continue from nextSeq.',
    params: z
      .strictObject({
        fromSeq: z.number().int().min(1).optional(),
        since: isoTimeSchema.optional(),
        limit: z.number().int().min(1).max(10000).optional(),
        ...eventFilter,
      })
      .optional(),
    result: '{ events: EventEnvelope[], nextSeq, lastSeq }',
    handler: (p, { events }) => readEventPage(events, p ?? {}),
  }),
  method({
    name: 'events.subscribe',
    summary:
      'Every durable event from fromSeq (default: the next one) exactly once, in seq order, as `events.event` notifications { subscription, event }. A subscriber that cannot keep up gets `subscription.dropped` { subscription, kind, reason, lastSeq } and the subscription ends.',
    params: z
      .strictObject({
        fromSeq: z.number().int().min(1).optional(),
        ...eventFilter,
      })
      .optional(),
    result: '{ subscription, fromSeq }',
    handler: (p, { runtime, events, connection }) => {
      const fromSeq = p?.fromSeq ?? events.lastSeq() + 1;
      let lastSeq = fromSeq - 1;
      const subscription = connection.subscribe({
        kind: 'events',
        start: (emit, end) => {
          const sub = runtime.events(fromSeq).subscribe({
            next: (event) => {
              if (!matches(event, p?.stream, p?.types)) {
                lastSeq = event.seq;
                return;
              }
              if (emit('events.event', { event })) lastSeq = event.seq;
            },
            error: (err: unknown) =>
              end('subscription.dropped', {
                kind: 'events',
                reason: err instanceof Error ? err.message : String(err),
                lastSeq,
              }),
            complete: () =>
              end('subscription.dropped', { kind: 'events', reason: 'event feed ended', lastSeq }),
          });
          return () => sub.unsubscribe();
        },
        noticeData: () => ({ lastSeq }),
      });
      return { subscription, fromSeq };
    },
  }),
  method({
    name: 'events.unsubscribe',
    summary: 'Ends a subscription of this connection (events.subscribe or exec.output follow).',
    params: z.strictObject({ subscription: z.string().min(1).max(64) }),
    result: '{ unsubscribed: boolean }',
    handler: (p, { connection }) => ({ unsubscribed: connection.unsubscribe(p.subscription) }),
  }),
  method({
    name: 'events.streams',
    summary: 'Streams of the log with their versions (prefix: e.g. "sandbox-").',
    params: z.strictObject({ prefix: z.string().max(256).optional() }).optional(),
    result: 'StreamInfo[] { stream, version }',
    handler: (p, { events }) => events.listStreams(p?.prefix),
  }),
  method({
    name: 'events.stuck',
    summary:
      'Intents without an outcome past their deadline (the effect timeouts), or waiting longer than olderThanMs in their step: what `sandboxctl events stuck` lists.',
    params: z.strictObject({ olderThanMs: z.number().int().min(0).max(86_400_000).optional() }).optional(),
    result:
      'StuckIntent[] { stream, kind, intent, seq, at, by, step, effect?, since, waitedMs, totalMs, deadlineMs }',
    handler: (p, { runtime }) => runtime.transitions?.stuck(Date.now(), p?.olderThanMs) ?? [],
  }),
  method({
    name: 'events.verify',
    summary:
      'Walks the whole log: store integrity (checksums, gaps, indexes) and every event a transition the machines allow.',
    params: z.strictObject({}).optional(),
    result: '{ ok, store: VerifyReport, transitions: { checked, problems: TransitionProblem[] } }',
    handler: async (_p, { events, checkTransitions }) => {
      const store: VerifyReport = await events.verify();
      let checked = 0;
      let problems: readonly TransitionProblem[] = [];
      if (checkTransitions) {
        const all: EventEnvelope[] = [];
        for await (const event of events.readAll(1)) all.push(event);
        checked = all.length;
        problems = checkTransitions(all);
      }
      return {
        ok: store.ok && problems.length === 0,
        store,
        transitions: { checked, available: checkTransitions !== undefined, problems },
      };
    },
  }),

  // Guest calls (the seeds' agent interface a user needs)
  method({
    name: 'guest.details',
    summary: "The guest's agent version, kernel, CPUs, memory and memory block size.",
    when: 'sandbox running.',
    params: sandboxIdRef,
    result: 'GuestDetails',
    handler: (p, { runtime }) => runtime.guestDetails(p.sandboxId),
  }),
  method({
    name: 'guest.interfaces',
    summary: "The guest's network interfaces.",
    when: 'sandbox running.',
    params: sandboxIdRef,
    result: 'NetInterface[]',
    handler: (p, { runtime }) => runtime.listInterfaces(p.sandboxId),
  }),
  method({
    name: 'guest.routes',
    summary: "The guest's routes.",
    when: 'sandbox running.',
    params: sandboxIdRef,
    result: 'NetRoute[]',
    handler: (p, { runtime }) => runtime.listRoutes(p.sandboxId),
  }),
  method({
    name: 'guest.updateInterface',
    summary:
      'Changes a guest interface: addresses (CIDR, replacing the old ones), MTU, MAC, up/down. Recorded as GuestNetworkUpdateRequested, then GuestNetworkUpdated (or GuestNetworkUpdateFailed) once the guest answered; lasts as long as this VM.',
    when: 'sandbox running; the interface exists in the guest (guest.interfaces).',
    params: z.strictObject({
      sandboxId: idSchema,
      interface: z.strictObject({
        name: z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, { error: 'must be an interface name' }),
        addresses: z.array(cidrSchema).max(32).optional(),
        mtu: z.number().int().min(68).max(65535).optional(),
        mac: z
          .string()
          .regex(/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/, { error: 'must be a MAC address' })
          .optional(),
        up: z.boolean().optional(),
      }),
    }),
    result: 'NetInterface (as the guest reports it after the change)',
    handler: (p, { runtime }) =>
      runtime.updateInterface(p.sandboxId, { ...p.interface, addresses: p.interface.addresses ?? [] }),
  }),
  method({
    name: 'guest.updateRoutes',
    summary:
      'Adds or replaces guest routes (dest "default" or a CIDR). Recorded as GuestNetworkUpdateRequested, then GuestNetworkUpdated (or GuestNetworkUpdateFailed) once the guest answered; lasts as long as this VM.',
    when: 'sandbox running.',
    params: z.strictObject({
      sandboxId: idSchema,
      routes: z
        .array(
          z.strictObject({
            dest: z.union([z.literal('default'), cidrSchema]),
            gateway: ipAddressSchema.optional(),
            device: z
              .string()
              .regex(/^[A-Za-z0-9_.:-]{1,15}$/, { error: 'must be an interface name' })
              .optional(),
            source: ipAddressSchema.optional(),
          }),
        )
        .min(1)
        .max(64),
    }),
    result: 'NetRoute[] (the whole table after the change)',
    handler: (p, { runtime }) => runtime.updateRoutes(p.sandboxId, p.routes),
  }),
  method({
    name: 'guest.setTime',
    summary: "Sets the guest's clock (default: the host's time now), e.g. after a long pause.",
    when: 'sandbox running.',
    params: z.strictObject({ sandboxId: idSchema, time: isoTimeSchema.optional() }),
    result: '{ time: ISO time set }',
    handler: async (p, { runtime }) => ({
      time: (await runtime.setGuestTime(p.sandboxId, p.time ? new Date(p.time) : undefined)).toISOString(),
    }),
  }),
  method({
    name: 'guest.reseedRandom',
    summary:
      "Mixes bytes into the guest's entropy pool (default: 64 random bytes from the host), e.g. after restoring a VM.",
    when: 'sandbox running.',
    params: z.strictObject({ sandboxId: idSchema, data: base64Schema.optional() }),
    result: '{ bytes: number }',
    handler: async (p, { runtime }) => ({
      bytes: await runtime.reseedGuestRandom(
        p.sandboxId,
        p.data === undefined ? undefined : Buffer.from(p.data, 'base64'),
      ),
    }),
  }),
  method({
    name: 'guest.copyFile',
    summary:
      'Copies bytes (base64) to a file in the guest (the agent refuses paths outside the sandbox dirs).',
    when: 'sandbox running.',
    params: z.strictObject({
      sandboxId: idSchema,
      path: absolutePathSchema,
      data: base64Schema,
      mode: z.number().int().min(0).max(0o7777).optional(),
    }),
    result: '{ copied: bytes }',
    handler: async (p, { runtime }) => {
      const data = Buffer.from(p.data, 'base64');
      await runtime.copyFile(p.sandboxId, p.path, data, p.mode);
      return { copied: data.length };
    },
  }),
  method({
    name: 'guest.metrics',
    summary: "The guest agent's metrics (Prometheus text).",
    when: 'sandbox running.',
    params: sandboxIdRef,
    result: '{ metrics: string }',
    handler: async (p, { runtime }) => ({ metrics: await runtime.metrics(p.sandboxId) }),
  }),
] as const satisfies readonly MethodSpec[];

function safeContainers(runtime: Runtime, sandboxId: string) {
  try {
    return runtime.listContainers(sandboxId);
  } catch {
    return [];
  }
}

export type MethodName = (typeof methods)[number]['name'];

/** Methods by name. */
export const methodTable: ReadonlyMap<string, MethodSpec> = new Map(
  methods.map((m) => [m.name, m as MethodSpec]),
);
