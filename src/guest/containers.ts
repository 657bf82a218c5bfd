// Containers in the guest under crun: `crun run` as each container's monitor, a createRuntime hook as the start gate.
//
// Why `crun run` and not `crun create`: a detached container is reparented away from the agent, and Node can neither
// become a subreaper nor waitpid a process it did not spawn, so its exit code would be lost. `crun run` stays the
// container's parent (a subreaper) and exits with its status. The OCI create/start split is kept by a createRuntime
// hook that reports the container's pid and then blocks on a FIFO until StartContainer writes to it.
//
// This file holds the container table and routes each verb to its flow: create.ts (create, start), exec.ts,
// remove.ts, exits.ts (exits and OOM kills), crun.ts (crun and signals).
import type { Logger } from 'pino';
import type { WireContainerInfo, WireProcessSpec, WireResources } from '../agent/index.js';
import { Internal, InvalidArgument, InvalidState, NotFound } from '../errors/index.js';
import { processTable, readStats, writeResources } from './cgroup.js';
import type { Container, GuestContext, GuestPaths } from './container-record.js';
import { createContainer, startContainer } from './create.js';
import { killPid, runCrun, terminalOpener } from './crun.js';
import type { GuestEventLog, GuestExitStatus } from './events.js';
import { execProcess } from './exec.js';
import { signalNumber } from './oci-spec.js';
import { DEFAULT_OUTPUT_CAPACITY, type OutputBuffer } from './output.js';
import { CrunTimings, type GuestProcess } from './process.js';
import { removeContainer } from './remove.js';

const MAX_WINDOW_SIZE = 0xffff;

/**
 * The containers of this sandbox. Every method throws the typed errors (NotFound for an unknown id, InvalidState for
 * a wrong status, InvalidArgument for a bad spec, Internal naming the crun step that failed).
 */
export class ContainerManager {
  readonly #context: GuestContext;
  readonly #containers = new Map<string, Container>();
  /** Bytes each stream keeps while nobody reads (CreateSandbox may set it; tests make it tiny to see loss). */
  outputCapacity = DEFAULT_OUTPUT_CAPACITY;
  /** Kata's sandbox pidns: containers created after this see each other's processes. */
  sharedPidNs = false;
  /** The sandbox was given DNS servers: every container sees its resolv.conf (as Kata's and CRI's do). */
  sandboxResolvConf = false;
  /** Wall time crun itself took (see CrunTimings), for the agent's metrics. */
  readonly timings = new CrunTimings();

  constructor(paths: GuestPaths, events: GuestEventLog, logger: Logger) {
    this.#context = {
      paths,
      events,
      logger,
      timings: this.timings,
      openTerminal: terminalOpener(paths, logger),
    };
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

  // The verbs that only route stay async: a lookup's NotFound rejects their promise rather than throwing.
  async create(
    id: string,
    bundle: string,
    processOverride: WireProcessSpec | null,
    resources: WireResources | null,
  ): Promise<number> {
    // The manager is its own SandboxSettings: create reads them as CreateSandbox last set them.
    return createContainer(this.#context, this.#containers, this, { id, bundle, processOverride, resources });
  }

  async start(id: string): Promise<void> {
    return startContainer(this.#context, this.#get(id));
  }

  async pause(id: string): Promise<void> {
    const container = this.#get(id);
    if (container.status !== 'running') throw new InvalidState('container', id, container.status, 'pause');
    await runCrun(this.#context.paths, 'crun pause', ['pause', id], id);
    container.status = 'paused';
  }

  async resume(id: string): Promise<void> {
    const container = this.#get(id);
    if (container.status !== 'paused') throw new InvalidState('container', id, container.status, 'resume');
    await runCrun(this.#context.paths, 'crun resume', ['resume', id], id);
    container.status = 'running';
  }

  /** Kills what still runs (SIGKILL), waits up to `timeoutMs`, removes crun state and our cgroup. */
  async remove(id: string, timeoutMs: number): Promise<void> {
    return removeContainer(this.#context, this.#containers, this.#get(id), timeoutMs);
  }

  async exec(containerId: string, execId: string, spec: WireProcessSpec | null): Promise<number> {
    return execProcess(this.#context, this.#get(containerId), execId, spec, this.outputCapacity);
  }

  async signal(containerId: string, execId: string, signal: string, all: boolean): Promise<void> {
    const container = this.#get(containerId);
    const number = signalNumber(signal);
    if (all) {
      if (execId !== '')
        throw new InvalidArgument('all', 'signals every process of the container: execId must be ""');
      if (container.init.exit) throw new InvalidState('container', containerId, 'stopped', 'signal');
      await runCrun(
        this.#context.paths,
        'crun kill',
        ['kill', '--all', containerId, String(number)],
        containerId,
      );
      return;
    }
    const process = this.#process(containerId, execId);
    if (process.exit) throw new InvalidState('process', `${containerId}/${execId}`, 'exited', 'signal');
    if (process.pid <= 0)
      throw new InvalidState('process', `${containerId}/${execId}`, 'not started', 'signal');
    killPid(process.pid, number);
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
        this.#context.logger.warn({ err, containerId: id, step: 'remove' }, 'container removal failed'),
      );
    }
  }
}
