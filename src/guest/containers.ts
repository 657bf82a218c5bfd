// Containers in the guest under crun: `crun run` as each container's monitor, a createRuntime hook as the start gate.
//
// Why `crun run` and not `crun create`: a detached container is reparented away from the agent, and Node can neither
// become a subreaper nor waitpid a process it did not spawn, so its exit code would be lost. `crun run` stays the
// container's parent (a subreaper) and exits with its status. The OCI create/start split is kept by a createRuntime
// hook that reports the container's pid and then blocks on a FIFO until StartContainer writes to it.
import type { ChildProcess } from 'node:child_process';
import { closeSync, constants as fsConstants, openSync, writeSync } from 'node:fs';
import { mkdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { isAbsolute, join, normalize, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { WireContainerInfo, WireProcessSpec, WireResources } from '../agent/index.js';
import {
  AlreadyExists,
  Internal,
  InvalidArgument,
  InvalidState,
  NotFound,
  Timeout,
} from '../errors/index.js';
import { sleep } from '../timing/index.js';
import { oomKills, processTable, readStats, watchMemoryEvents, writeResources } from './cgroup.js';
import type { GuestEventLog, GuestExitStatus } from './events.js';
import {
  addSandboxMount,
  addStartGate,
  applySpecResources,
  execProcessOf,
  notRunExitCode,
  type OciLinux,
  type OciProcess,
  type OciSpec,
  readBundleSpec,
  signalNumber,
} from './oci-spec.js';
import { DEFAULT_OUTPUT_CAPACITY, type OutputBuffer } from './output.js';
import {
  CONSOLE_DRAIN_MS,
  CrunTimings,
  GuestProcess,
  openConsole,
  runCommand,
  spawnCrun,
} from './process.js';

export interface GuestPaths {
  /** The sandbox share (bundles live here). */
  readonly sharedDir: string;
  /** The agent's private state (generated configs, FIFOs). */
  readonly stateDir: string;
  /** cgroup2 mount point. */
  readonly cgroupRoot: string;
  /** Container cgroups go under `${cgroupRoot}/${cgroupParent}/<id>`. */
  readonly cgroupParent: string;
  readonly crun: string;
  /** A POSIX shell in the guest root, for the start-gate hook. */
  readonly shell: string;
  /** The terminal helper (src/guest/sbx-console.c, built into the image); default `sbx-console` on PATH. */
  readonly consoleHelper?: string;
}

export const defaultGuestPaths = (sharedDir: string): GuestPaths => ({
  sharedDir,
  stateDir: '/run/sandboxd/agent',
  cgroupRoot: '/sys/fs/cgroup',
  cgroupParent: 'sandboxd',
  crun: 'crun',
  shell: '/bin/sh',
  consoleHelper: '/usr/bin/sbx-console',
});

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const CREATE_TIMEOUT_MS = 60_000;
/** Exited execs (status and buffered output) kept per container for late waits and reads. */
const MAX_EXITED_EXECS = 64;
/** Longest an exit event waits for its start RPC to answer (a created container that died on its own). */
const ANNOUNCE_WAIT_MS = 30_000;

const MAX_WINDOW_SIZE = 0xffff;

type Status = 'created' | 'running' | 'paused' | 'stopped';

interface Container {
  readonly id: string;
  status: Status;
  readonly bundleDir: string;
  readonly stateDir: string;
  /** Ours; survives the container, so its hierarchical counters (OOM kills, usage) outlive crun's cleanup. */
  readonly cgroupDir: string;
  /** crun's (cgroupsPath): removed by crun when the container exits. */
  readonly leafCgroupDir: string;
  readonly spec: OciSpec;
  readonly init: GuestProcess;
  readonly execs: Map<string, GuestProcess>;
  gateFd: number | undefined;
  oomSeen: number;
  stopWatching: (() => void) | undefined;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * The containers of this sandbox. Every method throws the typed errors (NotFound for an unknown id, InvalidState for
 * a wrong status, InvalidArgument for a bad spec, Internal naming the crun step that failed).
 */
export class ContainerManager {
  readonly #paths: GuestPaths;
  readonly #events: GuestEventLog;
  readonly #logger: Logger;
  readonly #containers = new Map<string, Container>();
  /** Bytes each stream keeps while nobody reads (CreateSandbox may set it; tests make it tiny to see loss). */
  outputCapacity = DEFAULT_OUTPUT_CAPACITY;

  constructor(paths: GuestPaths, events: GuestEventLog, logger: Logger) {
    this.#paths = paths;
    this.#events = events;
    this.#logger = logger;
  }

  #get(id: string): Container {
    const container = this.#containers.get(id);
    if (!container) throw new NotFound('container', id);
    return container;
  }

  #process(containerId: string, execId: string): GuestProcess {
    const container = this.#get(containerId);
    if (execId === '') return container.init;
    const process = container.execs.get(execId);
    if (!process) throw new NotFound('process', `${containerId}/${execId}`);
    return process;
  }

  /** Bundle dir inside the share; traversal refused. */
  #bundleDir(bundle: string): string {
    if (bundle === '' || isAbsolute(bundle) || normalize(bundle).split('/').includes('..')) {
      throw new InvalidArgument('bundle', 'must be a relative path inside the sandbox share');
    }
    return resolve(this.#paths.sharedDir, bundle);
  }

  async create(
    id: string,
    bundle: string,
    processOverride: WireProcessSpec | null,
    resources: WireResources | null,
  ): Promise<number> {
    if (!ID_PATTERN.test(id))
      throw new InvalidArgument('containerId', 'must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}');
    if (this.#containers.has(id)) throw new AlreadyExists('container', id);
    const bundleDir = this.#bundleDir(bundle);
    const spec = await readBundleSpec(bundleDir, bundle, processOverride);

    const stateDir = join(this.#paths.stateDir, 'containers', id);
    const parentCgroup = join(this.#paths.cgroupRoot, this.#paths.cgroupParent);
    const cgroupDir = join(parentCgroup, id);
    const leafCgroupDir = join(cgroupDir, 'ctr');
    await rm(stateDir, { recursive: true, force: true });
    await mkdir(stateDir, { recursive: true });
    await mkdir(cgroupDir, { recursive: true });
    // The container's own cgroup sits one level down, so ours may delegate controllers to it.
    await writeFile(join(cgroupDir, 'cgroup.subtree_control'), '+cpu +memory +pids +io').catch((err) =>
      this.#logger.warn({ err, containerId: id, step: 'cgroup delegate' }, 'cannot enable controllers'),
    );

    if (this.sandboxResolvConf) addSandboxMount(spec, '/etc/resolv.conf');
    spec.linux ??= {};
    spec.linux.cgroupsPath = `/${this.#paths.cgroupParent}/${id}/ctr`;
    this.#joinSandboxPidNs(spec.linux);
    if (resources) applySpecResources(spec.linux, resources);

    const stateFile = join(stateDir, 'created.json');
    const gate = join(stateDir, 'start.fifo');
    const startedFile = join(stateDir, 'started');
    await runCommand('mkfifo', [gate]).then(({ code, output }) => {
      if (code !== 0) throw new Internal('mkfifo', output, { containerId: id });
    });
    addStartGate(spec, this.#paths.shell, stateFile, gate, startedFile);
    const configPath = join(stateDir, 'config.json');
    await writeFile(configPath, JSON.stringify(spec));

    const container: Container = {
      id,
      status: 'created',
      bundleDir,
      stateDir,
      cgroupDir,
      leafCgroupDir,
      spec,
      init: new GuestProcess('', this.outputCapacity),
      execs: new Map(),
      // O_RDWR keeps the FIFO's buffer alive whether or not the hook has opened it yet.
      gateFd: openSync(gate, fsConstants.O_RDWR | fsConstants.O_NONBLOCK),
      oomSeen: 0,
      stopWatching: undefined,
    };
    this.#containers.set(id, container);
    const pidFile = join(stateDir, 'init.pid');
    let consoleSocket: string;
    try {
      consoleSocket = spec.process.terminal
        ? await this.#openConsole(container, container.init, spec.process.consoleSize)
        : '';
    } catch (err) {
      this.#forget(container);
      throw err;
    }
    const child = this.#spawnMonitored(container, container.init, [
      'run',
      ...(consoleSocket ? ['--console-socket', consoleSocket] : []),
      '--bundle',
      bundleDir,
      '--config',
      configPath,
      '--pid-file',
      pidFile,
      id,
    ]);
    const deadline = Date.now() + CREATE_TIMEOUT_MS;
    for (;;) {
      const text = await readFile(stateFile, 'utf8').catch(() => undefined);
      if (text !== undefined) {
        const state = JSON.parse(text) as { pid?: number };
        container.init.pid = state.pid ?? 0;
        break;
      }
      if (container.init.exit || child.exitCode !== null) {
        await container.init.exited;
        const output = container.init.stderr.readFrom(0).data.toString('utf8').trim();
        this.#forget(container);
        throw new Internal('crun run', output || `exited ${container.init.exit?.exitCode}`, {
          containerId: id,
        });
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        this.#forget(container);
        throw new Timeout('crun create', CREATE_TIMEOUT_MS, { containerId: id });
      }
      await sleep(20);
    }
    container.init.createdAt = performance.now();
    this.#watchOom(container);
    this.#logger.info({ containerId: id, pid: container.init.pid }, 'container created');
    return container.init.pid;
  }

  async start(id: string): Promise<void> {
    const container = this.#get(id);
    if (container.status !== 'created') throw new InvalidState('container', id, container.status, 'start');
    const fd = container.gateFd;
    if (fd === undefined) throw new InvalidState('container', id, 'stopped', 'start');
    container.init.startedAt = performance.now();
    writeSync(fd, '\n');
    const startedFile = join(container.stateDir, 'started');
    const deadline = Date.now() + CREATE_TIMEOUT_MS;
    while (!(await exists(startedFile))) {
      if (container.init.exit) break;
      if (Date.now() > deadline) throw new Timeout('crun start gate', CREATE_TIMEOUT_MS, { containerId: id });
      await sleep(10);
    }
    this.#closeGate(container);
    container.init.announce();
    // A program crun could not execute still started, as far as the host can tell: its exit (126/127) follows.
    if (container.init.exit && !container.init.notRun)
      throw new InvalidState('container', id, 'stopped', 'start');
    container.status = 'running';
    this.#logger.info({ containerId: id }, 'container started');
  }

  async pause(id: string): Promise<void> {
    const container = this.#get(id);
    if (container.status !== 'running') throw new InvalidState('container', id, container.status, 'pause');
    await this.#crun('crun pause', ['pause', id], id);
    container.status = 'paused';
  }

  async resume(id: string): Promise<void> {
    const container = this.#get(id);
    if (container.status !== 'paused') throw new InvalidState('container', id, container.status, 'resume');
    await this.#crun('crun resume', ['resume', id], id);
    container.status = 'running';
  }

  /** Kills what still runs (SIGKILL), waits up to `timeoutMs`, removes crun state and our cgroup. */
  async remove(id: string, timeoutMs: number): Promise<void> {
    const container = this.#get(id);
    container.init.announce();
    if (!container.init.exit) {
      // A created container's gate hook reads EOF once no writer is left, and crun tears the container down.
      this.#closeGate(container);
      if (container.status === 'paused') await this.#crun('crun resume', ['resume', id], id).catch(() => {});
      this.#kill(container.init.pid, 'SIGKILL');
      await runCommand(this.#paths.crun, ['kill', '--all', id, 'KILL']);
      const timer = sleep(timeoutMs || 10_000).then(() => 'timeout' as const);
      if ((await Promise.race([container.init.exited, timer])) === 'timeout') {
        container.init.child?.kill('SIGKILL');
        throw new Timeout('remove container', timeoutMs || 10_000, { containerId: id });
      }
    }
    await runCommand(this.#paths.crun, ['delete', '--force', id]);
    this.#forget(container);
    await rm(container.stateDir, { recursive: true, force: true });
    for (let attempt = 0; attempt < 50; attempt++) {
      const done = await rmdir(container.leafCgroupDir)
        .catch(() => {})
        .then(() => rmdir(container.cgroupDir))
        .then(
          () => true,
          (err: NodeJS.ErrnoException) => err.code === 'ENOENT',
        );
      if (done) break;
      await sleep(50);
    }
    this.#logger.info({ containerId: id }, 'container removed');
  }

  async exec(containerId: string, execId: string, spec: WireProcessSpec | null): Promise<number> {
    const container = this.#get(containerId);
    if (!ID_PATTERN.test(execId))
      throw new InvalidArgument('execId', 'must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}');
    // An exited exec's id may be taken again: the host deleted its record (exec.delete) before asking.
    const earlier = container.execs.get(execId);
    if (earlier && !earlier.exit) throw new AlreadyExists('process', `${containerId}/${execId}`);
    if (earlier) container.execs.delete(execId);
    if (container.status !== 'running')
      throw new InvalidState('container', containerId, container.status, 'exec');
    if (!spec || spec.args.length === 0) throw new InvalidArgument('process.args', 'must not be empty');
    const processJson = await execProcessOf(container.spec, spec);
    const processFile = join(container.stateDir, `exec-${execId}.json`);
    const pidFile = join(container.stateDir, `exec-${execId}.pid`);
    await writeFile(processFile, JSON.stringify(processJson));
    const process = new GuestProcess(execId, this.outputCapacity);
    this.#forgetOldExecs(container);
    container.execs.set(execId, process);
    let consoleSocket: string;
    try {
      consoleSocket = spec.terminal
        ? await this.#openConsole(container, process, processJson.consoleSize)
        : '';
    } catch (err) {
      container.execs.delete(execId);
      throw err;
    }
    this.#spawnMonitored(container, process, [
      'exec',
      ...(consoleSocket ? ['--console-socket', consoleSocket] : []),
      '--process',
      processFile,
      '--pid-file',
      pidFile,
      containerId,
    ]);
    const deadline = Date.now() + CREATE_TIMEOUT_MS;
    for (;;) {
      const text = await readFile(pidFile, 'utf8').catch(() => '');
      if (/^\d+/.test(text.trim())) {
        process.pid = Number.parseInt(text.trim(), 10);
        break;
      }
      if (process.exit) {
        if (process.exit.exitCode !== 0 && process.stdout.end === 0 && !process.notRun) {
          const output = process.stderr.readFrom(0).data.toString('utf8').trim();
          container.execs.delete(execId);
          throw new Internal('crun exec', output || `exited ${process.exit.exitCode}`, {
            containerId,
            execId,
          });
        }
        break;
      }
      if (Date.now() > deadline) throw new Timeout('crun exec', CREATE_TIMEOUT_MS, { containerId, execId });
      await sleep(10);
    }
    process.announce();
    return process.pid;
  }

  async signal(containerId: string, execId: string, signal: string, all: boolean): Promise<void> {
    const container = this.#get(containerId);
    const number = signalNumber(signal);
    if (all) {
      if (execId !== '')
        throw new InvalidArgument('all', 'signals every process of the container: execId must be ""');
      if (container.init.exit) throw new InvalidState('container', containerId, 'stopped', 'signal');
      await this.#crun('crun kill', ['kill', '--all', containerId, String(number)], containerId);
      return;
    }
    const process = this.#process(containerId, execId);
    if (process.exit) throw new InvalidState('process', `${containerId}/${execId}`, 'exited', 'signal');
    if (process.pid <= 0)
      throw new InvalidState('process', `${containerId}/${execId}`, 'not started', 'signal');
    this.#kill(process.pid, number);
  }

  wait(containerId: string, execId: string, signal: AbortSignal): Promise<GuestExitStatus | undefined> {
    const process = this.#process(containerId, execId);
    if (process.exit) return Promise.resolve(process.exit);
    return new Promise((resolvePromise) => {
      const onAbort = () => resolvePromise(undefined);
      signal.addEventListener('abort', onAbort, { once: true });
      void process.exited.then((status) => {
        signal.removeEventListener('abort', onAbort);
        resolvePromise(status);
      });
    });
  }

  async writeStdin(containerId: string, execId: string, data: Buffer): Promise<number> {
    const process = this.#process(containerId, execId);
    const stdin = process.stdin;
    if (!stdin) throw new InvalidState('process', `${containerId}/${execId}`, 'stdin closed', 'write stdin');
    await new Promise<void>((resolvePromise, reject) =>
      stdin.write(data, (err) => (err ? reject(new Internal('write stdin', err.message)) : resolvePromise())),
    );
    return data.length;
  }

  closeStdin(containerId: string, execId: string): void {
    const process = this.#process(containerId, execId);
    process.stdin?.end();
    process.stdin = undefined;
  }

  output(containerId: string, execId: string, which: 'stdout' | 'stderr'): OutputBuffer {
    return this.#process(containerId, execId)[which];
  }

  ttyWinResize(containerId: string, execId: string, rows: number, cols: number): void {
    const process = this.#process(containerId, execId);
    if (!process.resize)
      throw new InvalidState('process', `${containerId}/${execId}`, 'without terminal', 'resize');
    if (process.exit) throw new InvalidState('process', `${containerId}/${execId}`, 'exited', 'resize');
    if (
      !Number.isInteger(rows) ||
      !Number.isInteger(cols) ||
      rows > MAX_WINDOW_SIZE ||
      cols > MAX_WINDOW_SIZE
    ) {
      throw new InvalidArgument('rows', `window size must be whole numbers up to ${MAX_WINDOW_SIZE}`);
    }
    process.resize(rows, cols);
  }

  #consoleCount = 0;

  /** The terminal helper for `process`; resolves the console socket to hand crun once the helper listens. */
  async #openConsole(
    container: Container,
    process: GuestProcess,
    size: OciProcess['consoleSize'],
  ): Promise<string> {
    // Short and flat: sun_path holds 107 bytes, container and exec ids up to 64 each would not fit.
    const socketPath = join(this.#paths.stateDir, `tty-${++this.#consoleCount}.sock`);
    await openConsole(process, size, {
      socketPath,
      helperPath: this.#paths.consoleHelper ?? 'sbx-console',
      containerId: container.id,
      logger: this.#logger,
    });
    return socketPath;
  }

  async update(id: string, resources: WireResources | null): Promise<void> {
    const container = this.#get(id);
    if (container.init.exit) throw new InvalidState('container', id, 'stopped', 'update');
    if (!resources) throw new InvalidArgument('resources', 'required');
    await writeResources(container.leafCgroupDir, resources);
  }

  async stats(id: string) {
    const container = this.#get(id);
    return readStats(container.cgroupDir, container.leafCgroupDir);
  }

  async processes(id: string): Promise<{ pid: number; user: string; command: string }[]> {
    const container = this.#get(id);
    return processTable(container.leafCgroupDir);
  }

  list(): WireContainerInfo[] {
    return [...this.#containers.values()].map((container) => ({
      containerId: container.id,
      status: container.status,
      pid: container.init.pid,
      exit: container.init.exit ?? null,
      processes: [...container.execs.values()].map((process) => ({
        execId: process.execId,
        pid: process.pid,
        running: !process.exit,
        exit: process.exit ?? null,
      })),
    }));
  }

  /** Kills and removes every container (DestroySandbox). */
  async removeAll(): Promise<void> {
    for (const id of [...this.#containers.keys()]) {
      await this.remove(id, 10_000).catch((err) =>
        this.#logger.warn({ err, containerId: id, step: 'remove' }, 'container removal failed'),
      );
    }
  }

  #spawnMonitored(container: Container, process: GuestProcess, args: string[]): ChildProcess {
    return spawnCrun(
      this.#paths.crun,
      args,
      process,
      { logger: this.#logger, containerId: container.id },
      (status) => {
        void this.#onExit(container, process, status);
      },
    );
  }

  async #onExit(container: Container, process: GuestProcess, status: GuestExitStatus): Promise<void> {
    let final = status;
    // crun fails (1 for run, its own code for exec) both for a program that failed and for one it could not
    // execute: its message tells them apart.
    if (status.exitCode !== 0 && status.signal === '') {
      await Promise.race([process.closed, sleep(CONSOLE_DRAIN_MS)]);
      const said = process.stderr.readFrom(Math.max(0, process.stderr.end - 4096)).data.toString('utf8');
      const code = notRunExitCode(said);
      if (code !== undefined) {
        process.notRun = true;
        final = { exitCode: code, signal: '', oomKilled: false };
      }
    }
    if (process.execId === '') {
      const kills = await this.#checkOom(container);
      if (kills > 0 && status.signal === 'SIGKILL') final = { ...status, oomKilled: true };
      container.status = 'stopped';
      container.stopWatching?.();
      container.stopWatching = undefined;
      this.#closeGate(container);
    }
    process.stdin = undefined;
    this.timings.record(process);
    process.settle(final);
    this.#logger.info({ containerId: container.id, execId: process.execId, ...final }, 'process exited');
    // A create or exec that failed before its process existed is reported by its RPC's error, not as an exit.
    if (process.pid <= 0 && (process.execId === '' || !container.execs.has(process.execId))) return;
    // The exit is told after the RPC that started the process has answered (a fast `echo` ends before ExecProcess
    // returns): hosts see started, then exited. setImmediate lets the answer reach the HTTP/2 session first.
    await Promise.race([process.announced, sleep(ANNOUNCE_WAIT_MS)]);
    await new Promise((resolve) => setImmediate(resolve));
    this.#events.publish({
      type: 'processExited',
      containerId: container.id,
      execId: process.execId,
      status: final,
    });
  }

  /** Wall time crun itself took (see CrunTimings), for the agent's metrics. */
  readonly timings = new CrunTimings();

  /** Publishes an OOM event for every kill not reported yet; returns the total count. */
  async #checkOom(container: Container): Promise<number> {
    const kills = await oomKills(container.cgroupDir);
    if (kills > container.oomSeen) {
      container.oomSeen = kills;
      this.#logger.warn({ containerId: container.id, oomKills: kills }, 'OOM kill in container');
      this.#events.publish({ type: 'oom', containerId: container.id });
    }
    return kills;
  }

  #watchOom(container: Container): void {
    container.stopWatching = watchMemoryEvents(container.cgroupDir, () => void this.#checkOom(container));
  }

  /** Kata's sandbox pidns: containers created after this see each other's processes. */
  sharedPidNs = false;
  /** The sandbox was given DNS servers: every container sees its resolv.conf (as Kata's and CRI's do). */
  sandboxResolvConf = false;

  /** With a shared pidns, a new container joins the pid namespace of the oldest container still running. */
  #joinSandboxPidNs(linux: OciLinux): void {
    if (!this.sharedPidNs) return;
    const host = [...this.#containers.values()].find((c) => !c.init.exit && c.init.pid > 0);
    if (!host) return;
    const namespaces = Array.isArray(linux.namespaces)
      ? (linux.namespaces as { type: string; path?: string }[])
      : [];
    linux.namespaces = [
      ...namespaces.filter((ns) => ns.type !== 'pid'),
      { type: 'pid', path: `/proc/${host.init.pid}/ns/pid` },
    ];
  }

  /** Bounds memory in long-lived containers (health checks exec forever): only the newest exited execs are kept. */
  #forgetOldExecs(container: Container): void {
    const exited = [...container.execs.values()].filter((process) => process.exit);
    for (const process of exited.slice(0, Math.max(0, exited.length - MAX_EXITED_EXECS + 1))) {
      container.execs.delete(process.execId);
    }
  }

  #closeGate(container: Container): void {
    if (container.gateFd !== undefined) {
      closeSync(container.gateFd);
      container.gateFd = undefined;
    }
  }

  #forget(container: Container): void {
    container.stopWatching?.();
    this.#closeGate(container);
    this.#containers.delete(container.id);
  }

  #kill(pid: number, signal: number | NodeJS.Signals): void {
    if (pid <= 0) return;
    try {
      process.kill(pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH')
        throw new Internal('kill', (err as Error).message, { pid });
    }
  }

  async #crun(step: string, args: string[], containerId: string): Promise<void> {
    const { code, output } = await runCommand(this.#paths.crun, args);
    if (code !== 0) throw new Internal(step, output || `exit ${code}`, { containerId });
  }
}
