// A FAKE in-memory Runtime for API unit tests and the API benchmark: no VMs, no agent, simple state rules.
import { Observable, ReplaySubject } from 'rxjs';
import type {
  ContainerView,
  CreateContainerParams,
  ExecView,
  Runtime,
  SandboxConfig,
  SandboxView,
} from '../../src/actors/index.js';
import type { ContainerResources, ContainerStats, ExitStatus, ProcessSpec } from '../../src/agent/index.js';
import { AlreadyExists, InvalidState, NotFound } from '../../src/errors/index.js';
import { type EventEnvelope, EventRegistry, streamOf } from '../../src/events/index.js';
import { createMemoryEventStore, type EventStore } from '../../src/store/index.js';

const FAKE_EVENT_TYPES = [
  'SandboxCreated',
  'SandboxStarted',
  'SandboxStopped',
  'SandboxPaused',
  'SandboxResumed',
  'SandboxDeleted',
  'SandboxResized',
  'ContainerCreated',
  'ContainerStarted',
  'ContainerExited',
  'ContainerPaused',
  'ContainerResumed',
  'ContainerDeleted',
  'ContainerUpdated',
  'ExecStarted',
  'ProcessExited',
  'FakeNoise',
];

/** A registry that accepts the fake's event types with any data. */
export function fakeRegistry(): EventRegistry {
  return new EventRegistry().register(
    ...FAKE_EVENT_TYPES.map((type) => ({ type, schema: 1, validate: (d: unknown) => d })),
  );
}

interface FakeProcess {
  spec: ProcessSpec;
  state: string;
  pid?: number;
  exit?: ExitStatus;
  stdout: ReplaySubject<Uint8Array>;
  stderr: ReplaySubject<Uint8Array>;
  exited: Promise<ExitStatus>;
  finish: (status: ExitStatus) => void;
  version: number;
}

interface FakeContainer extends FakeProcess {
  id: string;
  bundle: string;
  createdAt: string;
  execs: Map<string, FakeProcess>;
}

interface FakeSandbox {
  id: string;
  state: string;
  config: SandboxConfig;
  pid?: number;
  createdAt: string;
  version: number;
  containers: Map<string, FakeContainer>;
  /** Set by updateSandbox: the totals it was grown to. */
  size?: { vcpus: number; memoryMiB: number };
}

export interface FakeRuntimeOptions {
  /** How long a sandbox stays "starting" (default 0). */
  readonly startDelayMs?: number;
  readonly store?: EventStore;
}

/** The fake, plus handles tests use to drive it. */
export interface FakeRuntime extends Runtime {
  readonly store: EventStore;
  /** Appends `n` filler events (for subscription tests). */
  noise(n: number): Promise<void>;
  /** Commands that were called, in order (method name and ids). */
  readonly calls: string[];
}

let nextPid = 1000;

function newProcess(spec: ProcessSpec): FakeProcess {
  let finish!: (s: ExitStatus) => void;
  const exited = new Promise<ExitStatus>((r) => {
    finish = r;
  });
  return {
    spec,
    state: 'created',
    stdout: new ReplaySubject<Uint8Array>(),
    stderr: new ReplaySubject<Uint8Array>(),
    exited,
    finish,
    version: 1,
  };
}

/**
 * Runs a fake process: prints its args to stdout; `exit N` exits N (after printing to stderr),
 * `sleep` runs until killed, anything else exits 0 at once.
 */
function runProcess(p: FakeProcess, onExit: (s: ExitStatus) => void): void {
  p.state = 'running';
  p.pid = nextPid++;
  const [cmd, arg] = p.spec.args;
  if (cmd === 'sleep') return;
  setImmediate(() => {
    p.stdout.next(Buffer.from(`${p.spec.args.join(' ')}\n`));
    const code = cmd === 'exit' ? Number(arg ?? 0) : 0;
    if (code !== 0) p.stderr.next(Buffer.from(`exiting with ${code}\n`));
    exitProcess(p, { exitCode: code }, onExit);
  });
}

function exitProcess(p: FakeProcess, status: ExitStatus, onExit: (s: ExitStatus) => void): void {
  if (p.state === 'exited' || p.state === 'stopped') return;
  p.state = 'exited';
  p.exit = status;
  p.stdout.complete();
  p.stderr.complete();
  p.finish(status);
  onExit(status);
}

/** Creates the FAKE runtime over a memory store (with the fake registry) unless one is given. */
export function createFakeRuntime(options: FakeRuntimeOptions = {}): FakeRuntime {
  const store = options.store ?? createMemoryEventStore({ registry: fakeRegistry() });
  const sandboxes = new Map<string, FakeSandbox>();
  const calls: string[] = [];

  const append = async (stream: string, type: string, data: unknown) => {
    await store.append(stream, 'any', [{ type, data }]);
  };
  const sandbox = (id: string): FakeSandbox => {
    const s = sandboxes.get(id);
    if (!s) throw new NotFound('sandbox', id);
    return s;
  };
  const container = (sandboxId: string, id: string): FakeContainer => {
    const c = sandbox(sandboxId).containers.get(id);
    if (!c) throw new NotFound('container', `${sandboxId}/${id}`);
    return c;
  };
  const exec = (sandboxId: string, containerId: string, execId: string): FakeProcess => {
    const c = container(sandboxId, containerId);
    if (execId === '') return c;
    const e = c.execs.get(execId);
    if (!e) throw new NotFound('exec', `${sandboxId}/${containerId}/${execId}`);
    return e;
  };
  const require = (entity: string, id: string, state: string, allowed: string[], command: string) => {
    if (!allowed.includes(state)) throw new InvalidState(entity, id, state, command);
  };
  const sandboxView = (s: FakeSandbox): SandboxView => ({
    id: s.id,
    state: s.state,
    config: s.config,
    ...(s.size ? s.size : {}),
    ...(s.pid !== undefined ? { pid: s.pid, accel: 'tcg' as const } : {}),
    containers: [...s.containers.keys()],
    createdAt: s.createdAt,
    version: s.version,
  });
  const containerState = (c: FakeContainer) => (c.state === 'exited' ? 'stopped' : c.state);
  const containerView = (sandboxId: string, c: FakeContainer): ContainerView => ({
    sandboxId,
    id: c.id,
    state: containerState(c),
    bundle: c.bundle,
    ...(c.pid !== undefined ? { pid: c.pid } : {}),
    ...(c.exit ? { exit: c.exit } : {}),
    execs: [...c.execs.keys()],
    createdAt: c.createdAt,
    version: c.version,
  });
  const execView = (sandboxId: string, containerId: string, id: string, e: FakeProcess): ExecView => ({
    sandboxId,
    containerId,
    id,
    state: e.state,
    process: e.spec,
    ...(e.pid !== undefined ? { pid: e.pid } : {}),
    ...(e.exit ? { exit: e.exit } : {}),
    version: e.version,
  });
  const zeroStats: ContainerStats = {
    cpuUsageUsec: 1,
    memoryUsageBytes: 4096,
    pids: 1,
    ioReadBytes: 0,
    ioWriteBytes: 0,
  };

  const runtime: FakeRuntime = {
    store,
    calls,
    accel: 'tcg',
    async noise(n) {
      for (let i = 0; i < n; i += 500) {
        const batch = Array.from({ length: Math.min(500, n - i) }, (_, k) => ({
          type: 'FakeNoise',
          data: { i: i + k, pad: 'x'.repeat(200) },
        }));
        await store.append('noise', 'any', batch);
      }
    },
    async createSandbox(id, config) {
      calls.push(`createSandbox ${id}`);
      if (sandboxes.has(id)) throw new AlreadyExists('sandbox', id);
      const s: FakeSandbox = {
        id,
        state: 'created',
        config,
        createdAt: new Date().toISOString(),
        version: 1,
        containers: new Map(),
      };
      sandboxes.set(id, s);
      await append(streamOf.sandbox(id), 'SandboxCreated', { config });
      return sandboxView(s);
    },
    async startSandbox(id) {
      calls.push(`startSandbox ${id}`);
      const s = sandbox(id);
      require('sandbox', id, s.state, ['created', 'stopped'], 'start');
      s.state = 'starting';
      if (options.startDelayMs) await new Promise((r) => setTimeout(r, options.startDelayMs));
      s.state = 'running';
      s.pid = nextPid++;
      s.version++;
      await append(streamOf.sandbox(id), 'SandboxStarted', { pid: s.pid });
      return sandboxView(s);
    },
    async stopSandbox(id) {
      calls.push(`stopSandbox ${id}`);
      const s = sandbox(id);
      require('sandbox', id, s.state, ['running', 'paused'], 'stop');
      s.state = 'stopped';
      delete s.pid;
      s.version++;
      for (const c of s.containers.values()) {
        exitProcess(c, { exitCode: 137, signal: 'SIGKILL' }, () => undefined);
        c.state = 'stopped';
      }
      await append(streamOf.sandbox(id), 'SandboxStopped', {});
      return sandboxView(s);
    },
    async pauseSandbox(id) {
      const s = sandbox(id);
      require('sandbox', id, s.state, ['running'], 'pause');
      s.state = 'paused';
      s.version++;
      await append(streamOf.sandbox(id), 'SandboxPaused', {});
      return sandboxView(s);
    },
    async resumeSandbox(id) {
      const s = sandbox(id);
      require('sandbox', id, s.state, ['paused'], 'resume');
      s.state = 'running';
      s.version++;
      await append(streamOf.sandbox(id), 'SandboxResumed', {});
      return sandboxView(s);
    },
    async deleteSandbox(id, opts) {
      calls.push(`deleteSandbox ${id}`);
      const s = sandbox(id);
      if (!opts?.force) require('sandbox', id, s.state, ['created', 'stopped', 'failed', 'lost'], 'delete');
      sandboxes.delete(id);
      await append(streamOf.sandbox(id), 'SandboxDeleted', {});
    },
    async updateSandbox(id, request) {
      calls.push(`updateSandbox ${id}`);
      const s = sandbox(id);
      require('sandbox', id, s.state, ['running'], 'update');
      const now = s.size ?? { vcpus: s.config.vcpus ?? 1, memoryMiB: s.config.memoryMiB ?? 512 };
      const next = { vcpus: request.vcpus ?? now.vcpus, memoryMiB: request.memoryMiB ?? now.memoryMiB };
      if (next.vcpus !== now.vcpus || next.memoryMiB !== now.memoryMiB) {
        s.size = next;
        s.version++;
        await append(streamOf.sandbox(id), 'SandboxResized', next);
      }
      return sandboxView(s);
    },
    getSandbox: (id) => sandboxView(sandbox(id)),
    listSandboxes: () => [...sandboxes.values()].map(sandboxView),
    async vmUsage(id) {
      sandbox(id);
      return undefined;
    },
    async sandboxStats(id) {
      const s = sandbox(id);
      require('sandbox', id, s.state, ['running', 'paused'], 'stats');
      return {
        sandbox: sandboxView(s),
        containers: Object.fromEntries([...s.containers.keys()].map((c) => [c, zeroStats])),
      };
    },

    async createContainer(p: CreateContainerParams) {
      calls.push(`createContainer ${p.sandboxId} ${p.id} ${p.bundle}`);
      const s = sandbox(p.sandboxId);
      require('sandbox', s.id, s.state, ['running'], 'container create');
      if (s.containers.has(p.id)) throw new AlreadyExists('container', `${p.sandboxId}/${p.id}`);
      const c: FakeContainer = {
        ...newProcess(p.process ?? { args: ['true'] }),
        id: p.id,
        bundle: p.bundle,
        createdAt: new Date().toISOString(),
        execs: new Map(),
      };
      c.pid = nextPid++;
      s.containers.set(p.id, c);
      await append(streamOf.container(p.sandboxId, p.id), 'ContainerCreated', { bundle: p.bundle });
      return containerView(p.sandboxId, c);
    },
    async startContainer(sandboxId, id) {
      const c = container(sandboxId, id);
      require('container', id, containerState(c), ['created'], 'start');
      runProcess(c, (status) => {
        void append(streamOf.container(sandboxId, id), 'ContainerExited', status);
      });
      c.version++;
      await append(streamOf.container(sandboxId, id), 'ContainerStarted', { pid: c.pid });
      return containerView(sandboxId, c);
    },
    async killContainer(sandboxId, id, signal) {
      const c = container(sandboxId, id);
      require('container', id, containerState(c), ['running', 'paused'], 'kill');
      exitProcess(c, { exitCode: 128 + (signal === 'SIGKILL' ? 9 : 15), signal }, (status) => {
        void append(streamOf.container(sandboxId, id), 'ContainerExited', status);
      });
    },
    async deleteContainer(sandboxId, id, opts) {
      const c = container(sandboxId, id);
      if (!opts?.force) require('container', id, containerState(c), ['created', 'stopped'], 'delete');
      exitProcess(c, { exitCode: 137, signal: 'SIGKILL' }, () => undefined);
      sandbox(sandboxId).containers.delete(id);
      await append(streamOf.container(sandboxId, id), 'ContainerDeleted', {});
    },
    async pauseContainer(sandboxId, id) {
      const c = container(sandboxId, id);
      require('container', id, containerState(c), ['running'], 'pause');
      c.state = 'paused';
      await append(streamOf.container(sandboxId, id), 'ContainerPaused', {});
      return containerView(sandboxId, c);
    },
    async resumeContainer(sandboxId, id) {
      const c = container(sandboxId, id);
      require('container', id, containerState(c), ['paused'], 'resume');
      c.state = 'running';
      await append(streamOf.container(sandboxId, id), 'ContainerResumed', {});
      return containerView(sandboxId, c);
    },
    getContainer: (sandboxId, id) => containerView(sandboxId, container(sandboxId, id)),
    listContainers: (sandboxId) =>
      [...sandbox(sandboxId).containers.values()].map((c) => containerView(sandboxId, c)),
    async containerStats(sandboxId, id) {
      container(sandboxId, id);
      return zeroStats;
    },
    async updateContainer(sandboxId, id, resources: ContainerResources) {
      const c = container(sandboxId, id);
      await append(streamOf.container(sandboxId, id), 'ContainerUpdated', { resources });
      return containerView(sandboxId, c);
    },
    async containerPs(sandboxId, id) {
      const c = container(sandboxId, id);
      return c.state === 'running' ? [{ pid: c.pid ?? 1, command: c.spec.args.join(' ') }] : [];
    },
    waitContainer: (sandboxId, id) => container(sandboxId, id).exited,

    async startExec(sandboxId, containerId, execId, spec) {
      const c = container(sandboxId, containerId);
      require('container', containerId, containerState(c), ['running'], 'exec');
      if (c.execs.has(execId)) throw new AlreadyExists('exec', execId);
      const e = newProcess(spec);
      c.execs.set(execId, e);
      runProcess(e, (status) => {
        void append(streamOf.exec(sandboxId, containerId, execId), 'ProcessExited', status);
      });
      await append(streamOf.exec(sandboxId, containerId, execId), 'ExecStarted', { pid: e.pid });
      return execView(sandboxId, containerId, execId, e);
    },
    waitExec: (sandboxId, containerId, execId) => exec(sandboxId, containerId, execId).exited,
    async killExec(sandboxId, containerId, execId, signal) {
      const e = exec(sandboxId, containerId, execId);
      require('exec', execId, e.state, ['running'], 'kill');
      exitProcess(e, { exitCode: 128 + 15, signal }, () => undefined);
    },
    async resizeExec(sandboxId, containerId, execId) {
      exec(sandboxId, containerId, execId);
    },
    getExec: (sandboxId, containerId, execId) =>
      execView(sandboxId, containerId, execId, exec(sandboxId, containerId, execId)),
    output(sandboxId, containerId, execId, stream) {
      return new Observable<Uint8Array>((subscriber) => {
        const p = exec(sandboxId, containerId, execId);
        return (stream === 'stdout' ? p.stdout : p.stderr).subscribe(subscriber);
      });
    },
    async writeStdin(sandboxId, containerId, execId, data) {
      const p = exec(sandboxId, containerId, execId);
      require('process', execId, p.state, ['running'], 'write stdin');
      // The fake echoes stdin to stdout, like `cat`.
      p.stdout.next(data);
      return data.length;
    },
    async closeStdin(sandboxId, containerId, execId) {
      const p = exec(sandboxId, containerId, execId);
      if (p.spec.args[0] === 'cat') exitProcess(p, { exitCode: 0 }, () => undefined);
    },

    async guestDetails(sandboxId) {
      sandbox(sandboxId);
      return {
        agentVersion: 'fake',
        kernel: '6.1.0-fake',
        memBlockSizeBytes: 134217728,
        cpus: 1,
        memTotalBytes: 1 << 29,
      };
    },
    async listInterfaces(sandboxId) {
      sandbox(sandboxId);
      return [{ name: 'lo', addresses: ['127.0.0.1/8'], up: true }];
    },
    async listRoutes(sandboxId) {
      sandbox(sandboxId);
      return [];
    },
    async updateInterface(sandboxId, iface) {
      sandbox(sandboxId);
      return { up: true, ...iface };
    },
    async updateRoutes(sandboxId, routes) {
      sandbox(sandboxId);
      return [...routes];
    },
    async setGuestTime(sandboxId, time = new Date()) {
      sandbox(sandboxId);
      return time;
    },
    async reseedGuestRandom(sandboxId, seed = new Uint8Array(64)) {
      sandbox(sandboxId);
      return seed.length;
    },
    async copyFile(sandboxId) {
      sandbox(sandboxId);
    },
    async metrics(sandboxId) {
      sandbox(sandboxId);
      return '# fake metrics\n';
    },
    events: (fromSeq?: number): Observable<EventEnvelope> => store.subscribe(fromSeq),
    async shutdown() {},
  };
  return runtime;
}
