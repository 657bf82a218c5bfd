// QemuHypervisor, the Hypervisor port on QEMU: the VMs it knows, each call routed to the VM it names.
import pino, { type Logger } from 'pino';
import { defer, type Observable, of, Subject } from 'rxjs';
import { AlreadyExists, HypervisorError, NotFound } from '../errors/index.js';
import { detectAccel } from './accel.js';
import { pinProcess } from './affinity.js';
import { type VmPaths, vmPaths } from './cmdline.js';
import { defaultReaperBinary, readExitStatus } from './exit-status.js';
import { hotplugCpus, hotplugMemory } from './hotplug.js';
import { dialRunningQemu, startQemu } from './launch.js';
import { restoreVmState, saveVmState } from './migration.js';
import { plugNic, unplugNic } from './nics.js';
import { isProcessAlive, readProcUsage } from './proc.js';
import { QemuVm } from './qemu-vm.js';
import type { QmpClient } from './qmp.js';
import { DEFAULT_STOP_TIMEOUT_MS, killQemu, removeVmState, stopQemu } from './teardown.js';
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
  readonly #vms = new Map<string, QemuVm>();
  readonly #busy = new Set<string>();
  /** Subscribers that came before the VM was launched or attached: the next VM known feeds them. */
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
    const vm = this.#vms.get(sandboxId);
    return vm && vm.exitReason === undefined ? vm.handle : undefined;
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
    const { handle, paths, qmp } = await startQemu(
      config,
      {
        qemuBinary: this.#qemuBinary,
        reaperBinary: this.#reaperBinary,
        timeoutMs: this.#launchTimeoutMs,
        accel,
        logger,
      },
      signal,
    );
    this.#register(handle, paths, qmp, logger);
    return handle;
  }

  #register(handle: VmHandle, paths: VmPaths, qmp: QmpClient, logger: Logger): void {
    const early = this.#early.get(handle.sandboxId);
    this.#early.delete(handle.sandboxId);
    const vm: QemuVm = new QemuVm({
      handle,
      paths,
      logger,
      events: early,
      reaperBinary: this.#reaperBinary,
      isCurrent: () => this.#vms.get(handle.sandboxId) === vm,
    });
    this.#vms.set(handle.sandboxId, vm);
    vm.watch(qmp, this.#monitorIntervalMs);
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
    const qmp = await dialRunningQemu(handle, logger);
    if (!qmp) return undefined;
    this.#register(handle, vmPaths(handle.stateDir), qmp, logger);
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
    const vm = this.#vms.get(sandboxId);
    if (!vm) return;
    this.#vms.delete(sandboxId);
    vm.unwatch();
  }

  /** Detaches every VM: they keep running. */
  async close(): Promise<void> {
    for (const sandboxId of [...this.#vms.keys()]) this.detach(sandboxId);
  }

  #live(sandboxId: string, step: string): QemuVm & { qmp: QmpClient } {
    const vm = this.#vms.get(sandboxId);
    if (!vm) throw new NotFound('vm', sandboxId);
    if (vm.exitReason !== undefined) {
      throw new HypervisorError(step, `VM has exited (${vm.exitReason})`, { sandboxId });
    }
    if (!vm.qmp) throw new HypervisorError(step, 'QMP is not connected', { sandboxId });
    return vm as QemuVm & { qmp: QmpClient };
  }

  async status(sandboxId: string): Promise<VmStatus> {
    const vm = this.#vms.get(sandboxId);
    if (!vm || vm.exitReason !== undefined) return 'gone';
    if (!vm.qmp) {
      return (await isProcessAlive(vm.handle.pid, vm.handle.pidStartTime)) ? 'shutdown' : 'gone';
    }
    try {
      const answer = await vm.qmp.execute<{ status: string; running: boolean }>('query-status');
      if (answer.running) return 'running';
      return answer.status === 'shutdown' || answer.status === 'guest-panicked' ? 'shutdown' : 'paused';
    } catch (err) {
      if (!(await isProcessAlive(vm.handle.pid, vm.handle.pidStartTime))) {
        vm.markExited();
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
    const vm = this.#vms.get(sandboxId);
    if (!vm) throw new NotFound('vm', sandboxId);
    if (vm.exitReason !== undefined) return;
    vm.ending = 'stopped';
    const timeoutMs = options.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    let running = false;
    try {
      running = (await this.status(sandboxId)) === 'running';
    } catch {
      running = false;
    }
    await stopQemu(vm, running, timeoutMs);
    await vm.settleExit();
  }

  async destroy(sandboxId: string, stateDir: string): Promise<void> {
    const vm = this.#vms.get(sandboxId);
    if (vm) {
      vm.ending ??= 'destroyed';
      if (vm.exitReason === undefined) {
        if (!(await killQemu(vm.handle.pid, vm.handle.pidStartTime))) {
          throw new HypervisorError('destroy', `QEMU pid ${vm.handle.pid} survived SIGKILL`, {
            sandboxId,
          });
        }
        vm.markExited();
      }
      this.#vms.delete(sandboxId);
    }
    await removeVmState(vmPaths(stateDir), sandboxId, this.#reaperBinary);
    this.#logger.info({ sandboxId, step: 'destroy' }, 'VM destroyed');
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
    const vm = this.#vms.get(sandboxId);
    if (!vm) throw new NotFound('vm', sandboxId);
    const { pid, pidStartTime } = vm.handle;
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
      const vm = this.#vms.get(sandboxId);
      if (vm?.exitReason !== undefined) return of<VmEvent>({ type: 'exited', reason: vm.exitReason });
      if (vm) return vm.events.asObservable();
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
