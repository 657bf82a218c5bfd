// A FAKE world for runtime tests and benchmarks: in-memory VMs, containers and processes behind the two ports.
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Observable, Subject } from 'rxjs';
import { currentIntent } from '../../src/actors/index.js';
import type {
  Agent,
  AgentEvent,
  ContainerInfo,
  ContainerResources,
  ContainerStats,
  ExitStatus,
  NetInterface,
  NetRoute,
  ProcessInfo,
} from '../../src/agent/index.js';
import {
  AgentError,
  AlreadyExists,
  HypervisorError,
  InvalidArgument,
  InvalidState,
  NotFound,
} from '../../src/errors/index.js';
import type {
  Accel,
  Hypervisor,
  VmConfig,
  VmEvent,
  VmHandle,
  VmSize,
  VmStatus,
} from '../../src/hypervisor/index.js';

export interface FakeProcess {
  pid: number;
  running: boolean;
  exit?: ExitStatus;
}

export interface FakeContainer {
  readonly id: string;
  status: 'created' | 'running' | 'paused' | 'stopped';
  readonly pid: number;
  exit?: ExitStatus;
  readonly processes: Map<string, FakeProcess>;
  /** The resources the last update gave it (none: as created). */
  resources?: ContainerResources;
}

export interface FakeVm {
  readonly handle: VmHandle;
  readonly config: VmConfig;
  status: 'running' | 'paused';
  readonly containers: Map<string, FakeContainer>;
  /** What updateInterface / updateRoutes set in this guest (created on first change). */
  network?: { interfaces: Map<string, NetInterface>; routes: Map<string, NetRoute> };
  guestReady: boolean;
  readonly vmEvents: Subject<VmEvent>;
  /** Hotplug state; absent until first used (the config's size, nothing plugged). */
  sizing?: FakeSizing;
}

export interface FakeSizing {
  /** What QEMU has: boot size plus hotplugged vCPUs and DIMMs. */
  vcpus: number;
  memoryMiB: number;
  dimms: number;
  /** What the guest uses: hotplugged parts count only once the agent onlined them. */
  onlineCpus: number;
  onlineMemoryMiB: number;
}

/** The VM's hotplug state, starting from its config's size. */
export function sizingOf(vm: FakeVm): FakeSizing {
  vm.sizing ??= {
    vcpus: vm.config.vcpus,
    memoryMiB: vm.config.memoryMiB,
    dimms: 0,
    onlineCpus: vm.config.vcpus,
    onlineMemoryMiB: vm.config.memoryMiB,
  };
  return vm.sizing;
}

/** DIMM slots of a fake VM, like QEMU's (src/hypervisor MEMORY_SLOTS). */
export const FAKE_DIMM_SLOTS = 4;

/** One effect a port carried out, with the intent (event id) that asked for it. */
export interface FakeEffect {
  readonly op: string;
  readonly sandboxId: string;
  readonly target?: string;
  readonly key?: string;
  readonly retry?: boolean;
}

/** A port call that makes the test "crash the daemon" at the Nth effect, before or after it lands. */
export interface CrashPlan {
  /** 1-based index among effect calls (counted from when the plan is set). */
  readonly atEffect: number;
  /** Whether the world changes before the daemon dies (crash after the effect, before its outcome is logged). */
  readonly lands: boolean;
  readonly onCrash: () => void;
}

type Op =
  | 'launch'
  | 'stop'
  | 'pause'
  | 'resume'
  | 'destroy'
  | 'connect'
  | 'createSandbox'
  | 'createContainer'
  | 'startContainer'
  | 'pauseContainer'
  | 'resumeContainer'
  | 'removeContainer'
  | 'updateContainer'
  | 'updateNetwork'
  | 'execProcess'
  | 'signalProcess'
  | 'hotplug';

const never = new Promise<never>(() => {});

/** The shared model both fake ports act on; survives "daemon restarts" (new port instances, same world). */
export class FakeWorld {
  readonly vms = new Map<string, FakeVm>();
  /** How each crashed VM ended, as QEMU's reaper would have kept it. */
  readonly ended = new Map<string, string>();
  readonly effects: FakeEffect[] = [];
  /** Effects that would have run twice in a real world (double launch, second create of a container, …). */
  readonly violations: string[] = [];
  /** Per-op latency in ms (0 = next tick). */
  readonly delays: Partial<Record<Op, number>> = {};
  /** Per-op failure to throw instead of acting. */
  readonly failures: Partial<Record<Op, Error>> = {};
  /** Ops that never answer (for timeouts). */
  readonly hangs = new Set<Op>();
  private readonly agentEvents = new Map<string, Subject<AgentEvent>>();
  private nextPid = 1000;
  private effectCount = 0;
  private crash: CrashPlan | undefined;
  crashed = false;

  planCrash(plan: CrashPlan | undefined): void {
    this.crash = plan;
    this.effectCount = 0;
    this.crashed = false;
  }

  pid(): number {
    this.nextPid += 1;
    return this.nextPid;
  }

  agentEventsOf(sandboxId: string): Subject<AgentEvent> {
    let s = this.agentEvents.get(sandboxId);
    if (!s) {
      s = new Subject<AgentEvent>();
      this.agentEvents.set(sandboxId, s);
    }
    return s;
  }

  /**
   * Runs one effect: delay, crash plan, failure injection, then `act` (which changes the world).
   * Returns act's value; never resolves when the daemon "crashed" at this effect.
   */
  async effect<T>(
    op: Op,
    sandboxId: string,
    target: string | undefined,
    act: () => T,
    callerAlive: () => boolean = () => true,
  ): Promise<T> {
    const delay = this.delays[op];
    await new Promise((r) => (delay ? setTimeout(r, delay) : setImmediate(r)));
    // A call from a daemon that died meanwhile never reaches the world.
    if (this.crashed || !callerAlive()) return never;
    if (this.hangs.has(op)) return never;
    const failure = this.failures[op];
    if (failure) throw failure;
    this.effectCount += 1;
    const plan = this.crash;
    const crashNow = plan !== undefined && this.effectCount === plan.atEffect;
    if (crashNow && !plan.lands) {
      this.crashed = true;
      plan.onCrash();
      return never;
    }
    const intent = currentIntent();
    const result = act();
    this.effects.push({
      op,
      sandboxId,
      ...(target === undefined ? {} : { target }),
      ...(intent ? { key: intent.eventId, retry: intent.retry } : {}),
    });
    if (crashNow) {
      this.crashed = true;
      plan.onCrash();
      return never;
    }
    return result;
  }

  vm(sandboxId: string): FakeVm {
    const vm = this.vms.get(sandboxId);
    if (!vm) throw new HypervisorError('qmp', `no VM for sandbox ${sandboxId}`, { sandboxId });
    return vm;
  }

  /** The VM dies on its own (QEMU crash, guest panic + panic=-1). */
  crashVm(sandboxId: string, reason = 'killed'): void {
    const vm = this.vms.get(sandboxId);
    if (!vm) return;
    this.vms.delete(sandboxId);
    this.ended.set(sandboxId, reason);
    vm.vmEvents.next({ type: 'exited', reason });
    vm.vmEvents.complete();
  }

  /** A process ends inside the guest; execId '' is the container's init. */
  exitProcess(sandboxId: string, containerId: string, execId: string, status: ExitStatus): void {
    const vm = this.vms.get(sandboxId);
    // Nothing runs, so nothing ends, inside a paused (frozen) guest.
    if (vm?.status === 'paused') return;
    const c = vm?.containers.get(containerId);
    if (!c) return;
    if (execId === '') {
      if (c.status === 'stopped') return;
      c.status = 'stopped';
      c.exit = status;
      for (const p of c.processes.values()) {
        if (p.running) {
          p.running = false;
          p.exit = { exitCode: 137, signal: 'SIGKILL' };
        }
      }
    } else {
      const p = c.processes.get(execId);
      if (!p?.running) return;
      p.running = false;
      p.exit = status;
    }
    this.agentEventsOf(sandboxId).next({ type: 'processExited', containerId, execId, status });
  }

  /** The container's cgroup OOM-kills its init. */
  oomKill(sandboxId: string, containerId: string): void {
    if (this.vms.get(sandboxId)?.status === 'paused') return;
    this.agentEventsOf(sandboxId).next({ type: 'oom', containerId });
    this.exitProcess(sandboxId, containerId, '', { exitCode: 137, signal: 'SIGKILL', oomKilled: true });
  }

  /** Effects with the same idempotency key and op that changed the world more than once. */
  duplicateEffects(): FakeEffect[] {
    const seen = new Set<string>();
    const dups: FakeEffect[] = [];
    for (const e of this.effects) {
      if (!e.key) continue;
      const k = `${e.op}:${e.target ?? e.sandboxId}:${e.key}`;
      if (
        seen.has(k) &&
        e.op !== 'connect' &&
        e.op !== 'destroy' &&
        e.op !== 'stop' &&
        e.op !== 'updateContainer' &&
        e.op !== 'updateNetwork'
      )
        dups.push(e);
      seen.add(k);
    }
    return dups;
  }
}

/** A fake Hypervisor over a FakeWorld; one instance per "daemon process" (sever() = that process died). */
export class FakeHypervisor implements Hypervisor {
  private readonly known = new Set<string>();
  private severed = false;

  constructor(
    readonly world: FakeWorld,
    private readonly accelName: Accel = 'tcg',
  ) {}

  /** The daemon process holding this port died: every call from now on hangs. */
  sever(): void {
    this.severed = true;
  }

  private act<T>(op: Op, sandboxId: string, target: string | undefined, fn: () => T): Promise<T> {
    return this.world.effect(op, sandboxId, target, fn, () => !this.severed);
  }

  private guard(): Promise<void> {
    return this.severed ? never : Promise.resolve();
  }

  private mine(sandboxId: string): FakeVm {
    if (!this.known.has(sandboxId)) {
      throw new HypervisorError('qmp', `VM of ${sandboxId} was neither launched nor attached here`, {
        sandboxId,
      });
    }
    return this.world.vm(sandboxId);
  }

  async accel(): Promise<Accel> {
    await this.guard();
    return this.accelName;
  }

  async launch(config: VmConfig, signal?: AbortSignal): Promise<VmHandle> {
    await this.guard();
    await mkdir(config.stateDir, { recursive: true });
    const handle = await this.act('launch', config.sandboxId, undefined, () => {
      if (signal?.aborted) throw new HypervisorError('launch', 'aborted', { sandboxId: config.sandboxId });
      if (this.world.vms.has(config.sandboxId)) {
        this.world.violations.push(`launch: a VM already runs for ${config.sandboxId}`);
      }
      const handle: VmHandle = {
        sandboxId: config.sandboxId,
        pid: this.world.pid(),
        pidStartTime: 42,
        accel: this.accelName,
        stateDir: config.stateDir,
        qmpSocket: join(config.stateDir, 'qmp.sock'),
        agentSocket: join(config.stateDir, 'agent.sock'),
        consoleLog: join(config.stateDir, 'console.log'),
      };
      this.world.vms.set(config.sandboxId, {
        handle,
        config,
        status: 'running',
        containers: new Map(),
        guestReady: false,
        vmEvents: new Subject<VmEvent>(),
      });
      return handle;
    });
    await writeFile(join(config.stateDir, 'qemu.pid'), String(handle.pid));
    this.known.add(config.sandboxId);
    return handle;
  }

  async exitStatusOf(handle: VmHandle): Promise<string | undefined> {
    return this.world.ended.get(handle.sandboxId);
  }

  async attach(handle: VmHandle): Promise<VmHandle | undefined> {
    await this.guard();
    const vm = this.world.vms.get(handle.sandboxId);
    if (!vm || vm.handle.pid !== handle.pid || vm.handle.pidStartTime !== handle.pidStartTime)
      return undefined;
    this.known.add(handle.sandboxId);
    return vm.handle;
  }

  async status(sandboxId: string): Promise<VmStatus> {
    await this.guard();
    if (!this.world.vms.has(sandboxId)) return 'gone';
    return this.mine(sandboxId).status;
  }

  async pause(sandboxId: string): Promise<void> {
    await this.guard();
    const vm = this.mine(sandboxId);
    await this.act('pause', sandboxId, undefined, () => {
      vm.status = 'paused';
    });
  }

  async resume(sandboxId: string): Promise<void> {
    await this.guard();
    const vm = this.mine(sandboxId);
    await this.act('resume', sandboxId, undefined, () => {
      vm.status = 'running';
    });
  }

  async stop(sandboxId: string): Promise<void> {
    await this.guard();
    if (!this.world.vms.has(sandboxId)) return;
    this.mine(sandboxId);
    await this.act('stop', sandboxId, undefined, () => this.world.crashVm(sandboxId, 'powerdown'));
  }

  async destroy(sandboxId: string, stateDir: string): Promise<void> {
    await this.guard();
    await this.act('destroy', sandboxId, undefined, () => this.world.crashVm(sandboxId, 'destroyed'));
    await rm(stateDir, { recursive: true, force: true });
    this.known.delete(sandboxId);
  }

  async hotplugCpus(sandboxId: string, total: number): Promise<number> {
    await this.guard();
    const vm = this.mine(sandboxId);
    if (!Number.isInteger(total) || total < 1 || total > vm.config.maxVcpus) {
      throw new InvalidArgument('total', `must be an integer in 1..${vm.config.maxVcpus} (maxVcpus)`);
    }
    const sizing = sizingOf(vm);
    return this.act('hotplug', sandboxId, `cpus ${total}`, () => {
      sizing.vcpus = Math.max(sizing.vcpus, total);
      return sizing.vcpus;
    });
  }

  async hotplugMemory(sandboxId: string, sizeMiB: number): Promise<void> {
    await this.guard();
    const sizing = sizingOf(this.mine(sandboxId));
    if (sizing.dimms >= FAKE_DIMM_SLOTS) {
      throw new InvalidArgument('sizeMiB', `no free DIMM slot: all ${FAKE_DIMM_SLOTS} are in use`);
    }
    await this.act('hotplug', sandboxId, `dimm ${sizeMiB}`, () => {
      sizing.dimms += 1;
      sizing.memoryMiB += sizeMiB;
    });
  }

  async size(sandboxId: string): Promise<VmSize> {
    await this.guard();
    const { vcpus, memoryMiB } = sizingOf(this.mine(sandboxId));
    return { vcpus, memoryMiB };
  }

  events(sandboxId: string): Observable<VmEvent> {
    const vm = this.world.vms.get(sandboxId);
    if (!vm) return new Observable((s) => s.complete());
    return new Observable<VmEvent>((subscriber) => {
      const sub = vm.vmEvents.subscribe({
        next: (e) => {
          if (!this.severed) subscriber.next(e);
        },
        complete: () => subscriber.complete(),
      });
      return () => sub.unsubscribe();
    });
  }
}

/** A fake Agent over a FakeWorld; like FakeHypervisor, one instance per "daemon process". */
export class FakeAgent implements Agent {
  private readonly connected = new Set<string>();
  private severed = false;
  /** Calls that reached the agent, in order (method:sandboxId). */
  readonly calls: string[] = [];

  constructor(readonly world: FakeWorld) {}

  sever(): void {
    this.severed = true;
  }

  private act<T>(op: Op, sandboxId: string, target: string | undefined, fn: () => T): Promise<T> {
    return this.world.effect(op, sandboxId, target, fn, () => !this.severed);
  }

  private async enter(method: string, sandboxId: string): Promise<FakeVm> {
    if (this.severed) return never;
    this.calls.push(`${method}:${sandboxId}`);
    if (!this.connected.has(sandboxId)) throw new AgentError(method, 'not connected', { sandboxId });
    const vm = this.world.vms.get(sandboxId);
    if (!vm) {
      this.connected.delete(sandboxId);
      throw new AgentError(method, 'connection closed: VM is gone', { sandboxId });
    }
    // Like a real frozen guest, a paused VM's agent does not answer.
    if (vm.status === 'paused') throw new AgentError(method, 'no answer: the guest is paused', { sandboxId });
    return vm;
  }

  private container(vm: FakeVm, method: string, containerId: string): FakeContainer {
    const c = vm.containers.get(containerId);
    if (!c) throw new NotFound('container', containerId, { step: method });
    return c;
  }

  async connect(sandboxId: string, agentSocket: string): Promise<void> {
    if (this.severed) return never;
    const vm = this.world.vms.get(sandboxId);
    if (!vm || vm.handle.agentSocket !== agentSocket) {
      throw new AgentError('connect', `no agent at ${agentSocket}`, { sandboxId });
    }
    if (vm.status === 'paused')
      throw new AgentError('connect', 'no answer: the guest is paused', { sandboxId });
    await this.act('connect', sandboxId, undefined, () => this.connected.add(sandboxId));
  }

  async disconnect(sandboxId: string): Promise<void> {
    this.connected.delete(sandboxId);
  }

  async check(sandboxId: string): Promise<{ version: string }> {
    await this.enter('check', sandboxId);
    return { version: 'fake-agent 1.0' };
  }

  async createSandbox(sandboxId: string): Promise<void> {
    const vm = await this.enter('createSandbox', sandboxId);
    await this.act('createSandbox', sandboxId, undefined, () => {
      if (vm.guestReady) this.world.violations.push(`createSandbox twice in ${sandboxId}`);
      vm.guestReady = true;
    });
  }

  async destroySandbox(sandboxId: string): Promise<void> {
    const vm = await this.enter('destroySandbox', sandboxId);
    vm.containers.clear();
    vm.guestReady = false;
  }

  async createContainer(
    sandboxId: string,
    request: { containerId: string; bundle: string },
  ): Promise<{ pid: number }> {
    const vm = await this.enter('createContainer', sandboxId);
    if (!existsSync(join(vm.config.sharedDir, request.bundle, 'config.json'))) {
      throw new AgentError('createContainer', `bundle ${request.bundle} is not in the share`, { sandboxId });
    }
    return this.act('createContainer', sandboxId, request.containerId, () => {
      if (vm.containers.has(request.containerId)) {
        this.world.violations.push(`createContainer twice: ${sandboxId}/${request.containerId}`);
        throw new AlreadyExists('container', request.containerId);
      }
      const pid = this.world.pid();
      vm.containers.set(request.containerId, {
        id: request.containerId,
        status: 'created',
        pid,
        processes: new Map(),
      });
      return { pid };
    });
  }

  async startContainer(sandboxId: string, containerId: string): Promise<void> {
    const vm = await this.enter('startContainer', sandboxId);
    const c = this.container(vm, 'startContainer', containerId);
    await this.act('startContainer', sandboxId, containerId, () => {
      if (c.status !== 'created') {
        this.world.violations.push(`startContainer in ${c.status}: ${sandboxId}/${containerId}`);
        throw new InvalidState('container', containerId, c.status, 'start');
      }
      c.status = 'running';
    });
  }

  async removeContainer(sandboxId: string, containerId: string): Promise<void> {
    const vm = await this.enter('removeContainer', sandboxId);
    await this.act('removeContainer', sandboxId, containerId, () => vm.containers.delete(containerId));
  }

  async pauseContainer(sandboxId: string, containerId: string): Promise<void> {
    const vm = await this.enter('pauseContainer', sandboxId);
    const c = this.container(vm, 'pauseContainer', containerId);
    await this.act('pauseContainer', sandboxId, containerId, () => {
      if (c.status !== 'running') throw new InvalidState('container', containerId, c.status, 'pause');
      c.status = 'paused';
    });
  }

  async resumeContainer(sandboxId: string, containerId: string): Promise<void> {
    const vm = await this.enter('resumeContainer', sandboxId);
    const c = this.container(vm, 'resumeContainer', containerId);
    await this.act('resumeContainer', sandboxId, containerId, () => {
      if (c.status !== 'paused') throw new InvalidState('container', containerId, c.status, 'resume');
      c.status = 'running';
    });
  }

  async listContainers(sandboxId: string): Promise<ContainerInfo[]> {
    const vm = await this.enter('listContainers', sandboxId);
    return [...vm.containers.values()].map((c) => ({
      containerId: c.id,
      status: c.status,
      pid: c.pid,
      ...(c.exit ? { exit: c.exit } : {}),
      processes: [...c.processes].map(([execId, p]) => ({
        execId,
        running: p.running,
        ...(p.exit ? { exit: p.exit } : {}),
      })),
    }));
  }

  async execProcess(
    sandboxId: string,
    request: { containerId: string; execId: string },
  ): Promise<{ pid: number }> {
    const vm = await this.enter('execProcess', sandboxId);
    const c = this.container(vm, 'execProcess', request.containerId);
    return this.act('execProcess', sandboxId, `${request.containerId}/${request.execId}`, () => {
      // An exited exec's id may be taken again (the host deleted its record); a running one never.
      if (c.processes.get(request.execId)?.running) {
        this.world.violations.push(
          `execProcess twice: ${sandboxId}/${request.containerId}/${request.execId}`,
        );
        throw new AlreadyExists('exec', request.execId);
      }
      if (c.status !== 'running') throw new InvalidState('container', c.id, c.status, 'exec');
      const pid = this.world.pid();
      c.processes.set(request.execId, { pid, running: true });
      return { pid };
    });
  }

  async signalProcess(sandboxId: string, containerId: string, execId: string, signal: string): Promise<void> {
    const vm = await this.enter('signalProcess', sandboxId);
    this.container(vm, 'signalProcess', containerId);
    await this.act('signalProcess', sandboxId, `${containerId}/${execId}`, () => {});
    if (signal === 'SIGKILL' || signal === 'SIGTERM' || signal === '9' || signal === '15') {
      const status = { exitCode: 128 + (signal.endsWith('KILL') || signal === '9' ? 9 : 15), signal };
      setImmediate(() => this.world.exitProcess(sandboxId, containerId, execId, status));
    }
  }

  async waitProcess(sandboxId: string, containerId: string, execId: string): Promise<ExitStatus> {
    const vm = await this.enter('waitProcess', sandboxId);
    const c = this.container(vm, 'waitProcess', containerId);
    // Like the real agent it waits for the end, here a few turns of the loop (a kill ends a process on the next).
    for (let turn = 0; turn < 20; turn++) {
      const exit = execId === '' ? c.exit : c.processes.get(execId)?.exit;
      if (exit) return exit;
      await new Promise((r) => setImmediate(r));
    }
    throw new AgentError('waitProcess', 'the fake agent waits only a few turns for a process to end');
  }

  async writeStdin(sandboxId: string, _c: string, _e: string, data: Uint8Array): Promise<number> {
    await this.enter('writeStdin', sandboxId);
    return data.length;
  }

  async closeStdin(sandboxId: string): Promise<void> {
    await this.enter('closeStdin', sandboxId);
  }

  readStdout(sandboxId: string, containerId: string, execId: string): Observable<Uint8Array> {
    return new Observable((s) => {
      s.next(new TextEncoder().encode(`stdout of ${sandboxId}/${containerId}/${execId}\n`));
      s.complete();
    });
  }

  readStderr(): Observable<Uint8Array> {
    return new Observable((s) => s.complete());
  }

  async ttyWinResize(sandboxId: string): Promise<void> {
    await this.enter('ttyWinResize', sandboxId);
  }

  async listProcesses(sandboxId: string, containerId: string): Promise<{ processes: ProcessInfo[] }> {
    const vm = await this.enter('listProcesses', sandboxId);
    const c = this.container(vm, 'listProcesses', containerId);
    return { processes: [{ pid: c.pid, command: 'init' }] };
  }

  async updateContainer(
    sandboxId: string,
    containerId: string,
    resources: ContainerResources,
  ): Promise<void> {
    const vm = await this.enter('updateContainer', sandboxId);
    const c = this.container(vm, 'updateContainer', containerId);
    await this.act('updateContainer', sandboxId, containerId, () => {
      c.resources = resources;
    });
  }

  async statsContainer(sandboxId: string, containerId: string): Promise<ContainerStats> {
    const vm = await this.enter('statsContainer', sandboxId);
    this.container(vm, 'statsContainer', containerId);
    return { cpuUsageUsec: 1, memoryUsageBytes: 4096, pids: 1, ioReadBytes: 0, ioWriteBytes: 0 };
  }

  async onlineCpuMem(sandboxId: string, options: { cpus?: number; memory?: boolean }): Promise<void> {
    const sizing = sizingOf(await this.enter('onlineCpuMem', sandboxId));
    const want = options.cpus ? Math.min(options.cpus, sizing.vcpus) : sizing.vcpus;
    sizing.onlineCpus = Math.max(sizing.onlineCpus, want);
    if (options.memory) sizing.onlineMemoryMiB = sizing.memoryMiB;
  }

  async memHotplugByProbe(sandboxId: string): Promise<void> {
    await this.enter('memHotplugByProbe', sandboxId);
  }

  async getGuestDetails(sandboxId: string) {
    const sizing = sizingOf(await this.enter('getGuestDetails', sandboxId));
    return {
      agentVersion: 'fake-agent 1.0',
      kernel: '6.1.0-fake',
      memBlockSizeBytes: 128 << 20,
      cpus: sizing.onlineCpus,
      memTotalBytes: sizing.onlineMemoryMiB * 1024 * 1024,
    };
  }

  async setGuestDateTime(sandboxId: string): Promise<void> {
    await this.enter('setGuestDateTime', sandboxId);
  }

  async copyFile(sandboxId: string): Promise<void> {
    await this.enter('copyFile', sandboxId);
  }

  async reseedRandomDev(sandboxId: string): Promise<void> {
    await this.enter('reseedRandomDev', sandboxId);
  }

  async listInterfaces(sandboxId: string): Promise<NetInterface[]> {
    const vm = await this.enter('listInterfaces', sandboxId);
    return [{ name: 'lo', addresses: ['127.0.0.1/8'], up: true }, ...(vm.network?.interfaces.values() ?? [])];
  }

  private networkOf(vm: FakeVm) {
    vm.network ??= { interfaces: new Map(), routes: new Map() };
    return vm.network;
  }

  async updateInterface(sandboxId: string, iface: NetInterface): Promise<NetInterface> {
    const vm = await this.enter('updateInterface', sandboxId);
    await this.act('updateNetwork', sandboxId, iface.name, () =>
      this.networkOf(vm).interfaces.set(iface.name, iface),
    );
    return iface;
  }

  async listRoutes(sandboxId: string): Promise<NetRoute[]> {
    const vm = await this.enter('listRoutes', sandboxId);
    return [...(vm.network?.routes.values() ?? [])];
  }

  async updateRoutes(sandboxId: string, routes: readonly NetRoute[]): Promise<NetRoute[]> {
    const vm = await this.enter('updateRoutes', sandboxId);
    await this.act('updateNetwork', sandboxId, 'routes', () => {
      for (const r of routes) this.networkOf(vm).routes.set(r.dest, r);
    });
    return [...this.networkOf(vm).routes.values()];
  }

  async getMetrics(sandboxId: string): Promise<string> {
    await this.enter('getMetrics', sandboxId);
    return '# fake metrics\n';
  }

  events(sandboxId: string): Observable<AgentEvent> {
    return new Observable<AgentEvent>((subscriber) => {
      const sub = this.world.agentEventsOf(sandboxId).subscribe((e) => {
        if (!this.severed) subscriber.next(e);
      });
      return () => sub.unsubscribe();
    });
  }
}
