import { mkdir, rm } from 'node:fs/promises';
import pino, { type Logger } from 'pino';
import { defer, type Observable, of, Subject } from 'rxjs';
import { AlreadyExists, HypervisorError, NotFound, SandboxdError } from '../errors/index.js';
import { detectAccel } from './accel.js';
import { pinProcess } from './affinity.js';
import { qemuArgs, type VmPaths, vmPaths } from './cmdline.js';
import { defaultReaperBinary, readExitStatus, waitExitStatus } from './exit-status.js';
import { hotplugCpus, hotplugMemory } from './hotplug.js';
import { restoreVmState, saveVmState } from './migration.js';
import { plugNic, unplugNic } from './nics.js';
import {
  isProcessAlive,
  readCmdline,
  readProcStat,
  readProcUsage,
  signalProcess,
  waitForExit,
} from './proc.js';
import { QmpClient, type QmpEvent } from './qmp.js';
import { spawnDaemonizedQemu } from './spawn.js';
import type {
  Accel,
  Hypervisor,
  StopOptions,
  TapNic,
  VmConfig,
  VmEvent,
  VmHandle,
  VmSize,
  VmStatus,
  VmUsage,
} from './types.js';
import { checkVmInputs, exists, readPidFile, readTail, removeVmFiles } from './vm-files.js';

export interface QemuHypervisorOptions {
  readonly logger?: Logger;
  /** Default `qemu-system-x86_64` (from PATH). */
  readonly qemuBinary?: string;
  /** Skips the KVM probe (as SANDBOXD_ACCEL does). */
  readonly accel?: Accel;
  /** Deadline for QEMU to daemonize and QMP to answer. Default 30000 ms (TCG on a loaded host is slow). */
  readonly launchTimeoutMs?: number;
  /** How often the process monitor looks at each pid. Default 500 ms. */
  readonly monitorIntervalMs?: number;
  /**
   * sandboxd-qemu-reaper, QEMU's parent that keeps its exit status (default: the one built into dist/bin,
   * or SANDBOXD_QEMU_REAPER); null runs QEMU without it (a vanished QEMU is then only "gone").
   */
  readonly reaperBinary?: string | null;
}

/** How long a graceful powerdown may take by default before `quit`. */
const DEFAULT_STOP_TIMEOUT_MS = 5_000;
const QUIT_GRACE_MS = 3_000;
const KILL_GRACE_MS = 5_000;

interface VmEntry {
  readonly handle: VmHandle;
  readonly paths: VmPaths;
  readonly logger: Logger;
  readonly events: Subject<VmEvent>;
  qmp: QmpClient | undefined;
  monitor: NodeJS.Timeout | undefined;
  /** Set once the process is known to be gone. */
  exitReason: string | undefined;
  /** Why the process is expected to go (stop, destroy), to name the exit. */
  ending: string | undefined;
  /** The reason QEMU gave in its SHUTDOWN event, if it sent one. */
  shutdownReason: string | undefined;
  readonly exited: Promise<void>;
  resolveExited: () => void;
}

/**
 * One QEMU per sandbox, started detached (`-daemonize`: own session, reparented away from the daemon)
 * so sandboxes outlive a daemon crash or upgrade. A VM is known to an instance after `launch` or
 * `attach`; `detach`/`close` forget VMs without touching them.
 */
export class QemuHypervisor implements Hypervisor {
  readonly #logger: Logger;
  readonly #qemuBinary: string;
  readonly #forcedAccel: Accel | undefined;
  readonly #launchTimeoutMs: number;
  readonly #monitorIntervalMs: number;
  readonly #reaperBinary: string | undefined;
  readonly #vms = new Map<string, VmEntry>();
  readonly #busy = new Set<string>();
  /** Subscribers that came before the VM was launched or attached: the next entry feeds them. */
  readonly #early = new Map<string, Subject<VmEvent>>();

  constructor(options: QemuHypervisorOptions = {}) {
    this.#logger = (options.logger ?? pino({ level: 'info' })).child({ component: 'hypervisor' });
    this.#qemuBinary = options.qemuBinary ?? 'qemu-system-x86_64';
    this.#forcedAccel = options.accel;
    this.#launchTimeoutMs = options.launchTimeoutMs ?? 30_000;
    this.#monitorIntervalMs = options.monitorIntervalMs ?? 500;
    this.#reaperBinary =
      options.reaperBinary === null ? undefined : (options.reaperBinary ?? defaultReaperBinary());
    if (!this.#reaperBinary) {
      this.#logger.warn('sandboxd-qemu-reaper not found: how a QEMU that vanishes ended will not be known');
    }
  }

  accel(): Promise<Accel> {
    if (this.#forcedAccel) return Promise.resolve(this.#forcedAccel);
    return detectAccel(this.#qemuBinary, this.#logger);
  }

  /** The handle of a VM this instance knows and that has not exited. */
  handle(sandboxId: string): VmHandle | undefined {
    const entry = this.#vms.get(sandboxId);
    return entry && entry.exitReason === undefined ? entry.handle : undefined;
  }

  async launch(config: VmConfig, signal?: AbortSignal): Promise<VmHandle> {
    const { sandboxId } = config;
    const known = this.#vms.get(sandboxId);
    if (this.#busy.has(sandboxId) || (known && known.exitReason === undefined)) {
      throw new AlreadyExists('vm', sandboxId);
    }
    this.#busy.add(sandboxId);
    try {
      return await this.#launch(config, signal);
    } finally {
      this.#busy.delete(sandboxId);
    }
  }

  async #launch(config: VmConfig, signal: AbortSignal | undefined): Promise<VmHandle> {
    const logger = this.#logger.child({ sandboxId: config.sandboxId });
    const accel = await this.accel();
    const args = qemuArgs(config, accel);
    const paths = vmPaths(config.stateDir);
    await checkVmInputs(config);
    const createdDir = !(await exists(paths.stateDir));
    if (!createdDir && (await this.#pidFromStateDir(paths)) !== undefined) {
      throw new AlreadyExists('vm', config.sandboxId, { stateDir: paths.stateDir });
    }
    await mkdir(paths.stateDir, { recursive: true, mode: 0o700 });
    await removeVmFiles(paths);
    const started = Date.now();
    let pid: number | undefined;
    let qmp: QmpClient | undefined;
    try {
      throwIfAborted(signal, 'qemu start');
      await spawnDaemonizedQemu({
        qemuBinary: this.#qemuBinary,
        reaperBinary: this.#reaperBinary,
        timeoutMs: this.#launchTimeoutMs,
        args,
        paths,
        signal,
        netns: config.network?.mode === 'netns' ? config.network.path : undefined,
      });
      pid = await readPidFile(paths.pidFile);
      const procStat = await readProcStat(pid);
      if (!procStat) throw new HypervisorError('qemu start', 'QEMU exited right after starting', { pid });
      const remaining = Math.max(1_000, this.#launchTimeoutMs - (Date.now() - started));
      qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs: remaining, ...(signal ? { signal } : {}) });
      throwIfAborted(signal, 'qmp connect');
      const handle: VmHandle = {
        sandboxId: config.sandboxId,
        pid,
        pidStartTime: procStat.startTime,
        accel,
        stateDir: paths.stateDir,
        qmpSocket: paths.qmpSocket,
        agentSocket: paths.agentSocket,
        outputSocket: paths.outputSocket,
        consoleLog: paths.consoleLog,
      };
      this.#register(handle, paths, qmp, logger);
      logger.info({ step: 'launch', pid, accel, ms: Date.now() - started }, 'VM launched');
      return handle;
    } catch (err) {
      qmp?.close();
      const consoleTail = await readTail(paths.consoleLog);
      if (pid === undefined) pid = await readPidFile(paths.pidFile).catch(() => undefined);
      if (pid !== undefined) {
        signalProcess(pid, 'SIGKILL');
        await waitForExit(pid, undefined, KILL_GRACE_MS);
        // Its reaper writes the exit status as it goes: let it, then remove that too.
        if (this.#reaperBinary) await waitExitStatus(paths.exitStatus, 500);
      }
      if (createdDir)
        await rm(paths.stateDir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
      else await removeVmFiles(paths);
      logger.warn({ step: 'launch', err, consoleTail }, 'VM launch failed; cleaned up');
      if (err instanceof SandboxdError) throw err;
      throw new HypervisorError(
        'launch',
        errorMessage(err),
        { sandboxId: config.sandboxId, consoleTail },
        err,
      );
    }
  }

  #register(handle: VmHandle, paths: VmPaths, qmp: QmpClient, logger: Logger): VmEntry {
    const early = this.#early.get(handle.sandboxId);
    this.#early.delete(handle.sandboxId);
    let resolveExited!: () => void;
    const exited = new Promise<void>((resolve) => {
      resolveExited = resolve;
    });
    const entry: VmEntry = {
      handle,
      paths,
      logger,
      events: early ?? new Subject<VmEvent>(),
      qmp: undefined,
      monitor: undefined,
      exitReason: undefined,
      ending: undefined,
      shutdownReason: undefined,
      exited,
      resolveExited,
    };
    this.#vms.set(handle.sandboxId, entry);
    this.#useQmp(entry, qmp);
    entry.monitor = setInterval(() => void this.#checkAlive(entry), this.#monitorIntervalMs);
    entry.monitor.unref();
    return entry;
  }

  #useQmp(entry: VmEntry, qmp: QmpClient): void {
    entry.qmp = qmp;
    qmp.events.subscribe((event) => this.#onQmpEvent(entry, event));
    void qmp.closed.then(async () => {
      if (entry.qmp === qmp) entry.qmp = undefined;
      if (entry.exitReason !== undefined || this.#vms.get(entry.handle.sandboxId) !== entry) return;
      // QEMU closes the monitor as it exits: look closely for a while instead of waiting for the next tick.
      if (await waitForExit(entry.handle.pid, entry.handle.pidStartTime, 2_000)) {
        await this.#checkAlive(entry);
        return;
      }
      // Still running with its monitor gone from under us: dial again, as after a daemon restart.
      if (entry.exitReason !== undefined || entry.ending !== undefined || entry.qmp !== undefined) return;
      if (this.#vms.get(entry.handle.sandboxId) !== entry) return;
      try {
        const again = await QmpClient.connect(entry.paths.qmpSocket, { timeoutMs: 5_000 });
        if (this.#vms.get(entry.handle.sandboxId) !== entry || entry.exitReason !== undefined) {
          again.close();
          return;
        }
        this.#useQmp(entry, again);
        entry.logger.info({ step: 'qmp reconnect' }, 'QMP session lost while the VM runs: reconnected');
      } catch (err) {
        entry.logger.warn({ step: 'qmp reconnect', err }, 'QMP session lost and could not be re-established');
      }
    });
  }

  #onQmpEvent(entry: VmEntry, event: QmpEvent): void {
    entry.logger.debug({ step: 'qmp event', event: event.event, data: event.data }, 'QMP event');
    switch (event.event) {
      case 'STOP':
        entry.events.next({ type: 'paused' });
        break;
      case 'RESUME':
        entry.events.next({ type: 'resumed' });
        break;
      case 'GUEST_PANICKED':
        entry.events.next({ type: 'panicked' });
        break;
      case 'DEVICE_DELETED': {
        const device = event.data.device ?? event.data.path;
        entry.events.next({ type: 'deviceDeleted', device: String(device ?? '') });
        break;
      }
      case 'SHUTDOWN':
        entry.shutdownReason = String(event.data.reason ?? 'unknown');
        break;
      default:
        // ACPI_DEVICE_OST and friends: logged above, not part of VmEvent.
        break;
    }
  }

  async #checkAlive(entry: VmEntry): Promise<void> {
    if (entry.exitReason !== undefined) return;
    if (await isProcessAlive(entry.handle.pid, entry.handle.pidStartTime)) return;
    // Nobody asked it to go and it said no SHUTDOWN: how it ended is what the reaper writes, just after.
    if (entry.ending === undefined && entry.shutdownReason === undefined && this.#reaperBinary) {
      await waitExitStatus(entry.paths.exitStatus, 500);
    }
    this.#markExited(entry);
  }

  #markExited(entry: VmEntry): void {
    if (entry.exitReason !== undefined) return;
    const reason =
      entry.shutdownReason !== undefined
        ? `shutdown: ${entry.shutdownReason}`
        : (entry.ending ?? readExitStatus(entry.paths.exitStatus) ?? 'QEMU process disappeared');
    entry.exitReason = reason;
    if (entry.monitor) clearInterval(entry.monitor);
    entry.monitor = undefined;
    entry.qmp?.close();
    entry.qmp = undefined;
    const level = entry.ending === undefined && entry.shutdownReason === undefined ? 'warn' : 'info';
    entry.logger[level]({ step: 'monitor', pid: entry.handle.pid, reason }, 'VM exited');
    entry.events.next({ type: 'exited', reason });
    entry.events.complete();
    entry.resolveExited();
  }

  async exitStatusOf(handle: VmHandle): Promise<string | undefined> {
    return readExitStatus(vmPaths(handle.stateDir).exitStatus);
  }

  async attach(handle: VmHandle): Promise<VmHandle | undefined> {
    const logger = this.#logger.child({ sandboxId: handle.sandboxId });
    const known = this.#vms.get(handle.sandboxId);
    if (known && known.exitReason === undefined) {
      if (known.handle.pid === handle.pid && known.handle.pidStartTime === handle.pidStartTime)
        return known.handle;
      throw new AlreadyExists('vm', handle.sandboxId, { pid: known.handle.pid });
    }
    if (!(await isProcessAlive(handle.pid, handle.pidStartTime))) {
      logger.info({ step: 'attach', pid: handle.pid }, 'VM is gone (or its pid was reused)');
      return undefined;
    }
    const paths = vmPaths(handle.stateDir);
    let qmp: QmpClient;
    try {
      qmp = await QmpClient.connect(handle.qmpSocket, { timeoutMs: 5_000 });
      await qmp.execute('query-status', undefined, { timeoutMs: 5_000 });
    } catch (err) {
      if (!(await isProcessAlive(handle.pid, handle.pidStartTime))) return undefined;
      // Alive but mute: not "gone". The caller decides (destroy is the last resort).
      throw new HypervisorError(
        'attach',
        `QEMU pid ${handle.pid} runs but QMP does not answer`,
        {
          sandboxId: handle.sandboxId,
          pid: handle.pid,
        },
        err,
      );
    }
    this.#register(handle, paths, qmp, logger);
    logger.info({ step: 'attach', pid: handle.pid }, 'VM reattached');
    return handle;
  }

  /**
   * The live QMP session of a VM, for operations the port does not name (diagnostics, tests). Throws
   * NotFound for an unknown VM, HypervisorError once it has exited.
   */
  qmp(sandboxId: string): QmpClient {
    return this.#live(sandboxId, 'qmp').qmp;
  }

  /** Forgets a VM without touching it (QMP closed, monitor stopped); its events() completes. */
  detach(sandboxId: string): void {
    const entry = this.#vms.get(sandboxId);
    if (!entry) return;
    this.#vms.delete(sandboxId);
    if (entry.monitor) clearInterval(entry.monitor);
    entry.qmp?.close();
    entry.events.complete();
  }

  /** Detaches every VM: they keep running. */
  async close(): Promise<void> {
    for (const sandboxId of [...this.#vms.keys()]) this.detach(sandboxId);
  }

  #live(sandboxId: string, step: string): VmEntry & { qmp: QmpClient } {
    const entry = this.#vms.get(sandboxId);
    if (!entry) throw new NotFound('vm', sandboxId);
    if (entry.exitReason !== undefined) {
      throw new HypervisorError(step, `VM has exited (${entry.exitReason})`, { sandboxId });
    }
    if (!entry.qmp) throw new HypervisorError(step, 'QMP is not connected', { sandboxId });
    return entry as VmEntry & { qmp: QmpClient };
  }

  async status(sandboxId: string): Promise<VmStatus> {
    const entry = this.#vms.get(sandboxId);
    if (!entry || entry.exitReason !== undefined) return 'gone';
    if (!entry.qmp) {
      return (await isProcessAlive(entry.handle.pid, entry.handle.pidStartTime)) ? 'shutdown' : 'gone';
    }
    try {
      const answer = await entry.qmp.execute<{ status: string; running: boolean }>('query-status');
      if (answer.running) return 'running';
      return answer.status === 'shutdown' || answer.status === 'guest-panicked' ? 'shutdown' : 'paused';
    } catch (err) {
      if (!(await isProcessAlive(entry.handle.pid, entry.handle.pidStartTime))) {
        this.#markExited(entry);
        return 'gone';
      }
      throw err;
    }
  }

  async pause(sandboxId: string): Promise<void> {
    await this.#live(sandboxId, 'pause').qmp.execute('stop');
  }

  async resume(sandboxId: string): Promise<void> {
    await this.#live(sandboxId, 'resume').qmp.execute('cont');
  }

  async stop(sandboxId: string, options: StopOptions = {}): Promise<void> {
    const entry = this.#vms.get(sandboxId);
    if (!entry) throw new NotFound('vm', sandboxId);
    if (entry.exitReason !== undefined) return;
    entry.ending = 'stopped';
    const { pid, pidStartTime } = entry.handle;
    const timeoutMs = options.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    const gone = (ms: number): Promise<boolean> => waitForExit(pid, pidStartTime, ms);
    let running = false;
    try {
      running = (await this.status(sandboxId)) === 'running';
    } catch {
      running = false;
    }
    // A paused guest cannot see the ACPI button: go straight to quit.
    if (running && timeoutMs > 0 && entry.qmp) {
      await entry.qmp.execute('system_powerdown').catch(() => undefined);
      if (await gone(timeoutMs)) return this.#settleExit(entry);
    }
    if (entry.qmp) {
      entry.logger.info({ step: 'stop', pid }, 'powerdown did not end the VM: quit');
      await entry.qmp.execute('quit', undefined, { timeoutMs: QUIT_GRACE_MS }).catch(() => undefined);
      if (await gone(QUIT_GRACE_MS)) return this.#settleExit(entry);
    }
    entry.logger.warn({ step: 'stop', pid }, 'quit did not end the VM: SIGKILL');
    signalProcess(pid, 'SIGKILL');
    if (await gone(KILL_GRACE_MS)) return this.#settleExit(entry);
    throw new HypervisorError('stop', `QEMU pid ${pid} survived SIGKILL`, { sandboxId, pid });
  }

  async #settleExit(entry: VmEntry): Promise<void> {
    this.#markExited(entry);
    await entry.exited;
  }

  async destroy(sandboxId: string, stateDir: string): Promise<void> {
    const paths = vmPaths(stateDir);
    const entry = this.#vms.get(sandboxId);
    if (entry) {
      entry.ending ??= 'destroyed';
      if (entry.exitReason === undefined) {
        signalProcess(entry.handle.pid, 'SIGKILL');
        if (!(await waitForExit(entry.handle.pid, entry.handle.pidStartTime, KILL_GRACE_MS))) {
          throw new HypervisorError('destroy', `QEMU pid ${entry.handle.pid} survived SIGKILL`, {
            sandboxId,
          });
        }
        this.#markExited(entry);
      }
      this.#vms.delete(sandboxId);
    }
    // A VM this instance never attached (e.g. after a restart): trust the pidfile only if that
    // process is a QEMU serving this very state dir.
    const orphan = await this.#pidFromStateDir(paths);
    if (orphan !== undefined) {
      signalProcess(orphan, 'SIGKILL');
      if (!(await waitForExit(orphan, undefined, KILL_GRACE_MS))) {
        throw new HypervisorError('destroy', `QEMU pid ${orphan} survived SIGKILL`, { sandboxId });
      }
    }
    if (this.#reaperBinary) await waitExitStatus(paths.exitStatus, 500);
    // Retried: a reaper still writing QEMU's exit status into the dir as it goes.
    await rm(paths.stateDir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
    this.#logger.info({ sandboxId, step: 'destroy' }, 'VM destroyed');
  }

  /** The pid in the state dir's pidfile when it is a live QEMU whose command line names this state dir. */
  async #pidFromStateDir(paths: VmPaths): Promise<number | undefined> {
    const pid = await readPidFile(paths.pidFile).catch(() => undefined);
    if (pid === undefined || !(await isProcessAlive(pid))) return undefined;
    const cmdline = await readCmdline(pid);
    return cmdline?.includes(paths.pidFile) ? pid : undefined;
  }

  async pinCpus(sandboxId: string, cpus: string | undefined): Promise<string> {
    const { handle, logger } = this.#live(sandboxId, 'pin vcpus');
    const list = await pinProcess(handle.pid, cpus);
    logger.info({ step: 'pin vcpus', cpus: list }, 'VM pinned to host CPUs');
    return list;
  }

  async hotplugCpus(sandboxId: string, total: number): Promise<number> {
    const { qmp, logger } = this.#live(sandboxId, 'hotplug cpus');
    const cpus = await hotplugCpus(qmp, total);
    logger.info({ step: 'hotplug cpus', total, cpus }, 'vCPUs hotplugged');
    return cpus;
  }

  async hotplugMemory(sandboxId: string, sizeMiB: number): Promise<void> {
    const { qmp, logger } = this.#live(sandboxId, 'hotplug memory');
    const dimm = await hotplugMemory(qmp, sandboxId, sizeMiB);
    logger.info({ step: 'hotplug memory', sizeMiB, dimm }, 'memory hotplugged');
  }

  async plugNic(sandboxId: string, nic: TapNic): Promise<void> {
    const { qmp, logger } = this.#live(sandboxId, 'nic hotplug');
    const how = await plugNic(qmp, nic);
    logger.info({ step: 'nic hotplug', tap: nic.tap, mac: nic.mac, how }, 'NIC plugged');
  }

  async unplugNic(sandboxId: string, tap: string): Promise<void> {
    const { qmp, logger } = this.#live(sandboxId, 'nic unplug');
    const how = await unplugNic(qmp, tap);
    logger.info({ step: 'nic unplug', tap, how }, 'NIC unplugged');
  }

  /** Pauses the VM and writes its state to `file` (see migration.ts); the VM stays paused. */
  async saveState(sandboxId: string, file: string, timeoutMs = 120_000): Promise<void> {
    const { logger } = this.#live(sandboxId, 'save state');
    await saveVmState(() => this.#live(sandboxId, 'save state').qmp, file, timeoutMs, logger);
  }

  /** Loads the state in `file` into a VM launched with `incoming` and runs it (see migration.ts). */
  async restoreState(sandboxId: string, file: string, timeoutMs = 60_000): Promise<void> {
    const { logger } = this.#live(sandboxId, 'restore state');
    await restoreVmState(() => this.#live(sandboxId, 'restore state').qmp, file, timeoutMs, logger);
  }

  async usage(sandboxId: string): Promise<VmUsage> {
    const entry = this.#vms.get(sandboxId);
    if (!entry) throw new NotFound('vm', sandboxId);
    const { pid, pidStartTime } = entry.handle;
    const usage = (await isProcessAlive(pid, pidStartTime)) ? await readProcUsage(pid) : undefined;
    if (!usage) throw new HypervisorError('usage', `QEMU (pid ${pid}) is gone`, { sandboxId });
    return { pid, ...usage };
  }

  async size(sandboxId: string): Promise<VmSize> {
    const { qmp } = this.#live(sandboxId, 'size');
    const [cpus, memory] = await Promise.all([
      qmp.execute<unknown[]>('query-cpus-fast'),
      qmp.execute<{ 'base-memory': number; 'plugged-memory'?: number }>('query-memory-size-summary'),
    ]);
    const bytes = memory['base-memory'] + (memory['plugged-memory'] ?? 0);
    return { vcpus: cpus.length, memoryMiB: Math.round(bytes / (1024 * 1024)) };
  }

  events(sandboxId: string): Observable<VmEvent> {
    return defer(() => {
      const entry = this.#vms.get(sandboxId);
      if (entry?.exitReason !== undefined) return of<VmEvent>({ type: 'exited', reason: entry.exitReason });
      if (entry) return entry.events.asObservable();
      let early = this.#early.get(sandboxId);
      if (!early) {
        early = new Subject<VmEvent>();
        this.#early.set(sandboxId, early);
      }
      return early.asObservable();
    });
  }
}

/** A QemuHypervisor (KVM if it really works here, else TCG; see `accel`). */
export function createQemuHypervisor(options: QemuHypervisorOptions = {}): QemuHypervisor {
  return new QemuHypervisor(options);
}

function throwIfAborted(signal: AbortSignal | undefined, step: string): void {
  if (signal?.aborted) throw new HypervisorError(step, 'aborted');
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
