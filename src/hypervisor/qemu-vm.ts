// One VM a QemuHypervisor knows: its QMP session (events, reconnect), the watch on its process, how it ended.
import type { Logger } from 'pino';
import { Subject } from 'rxjs';
import type { VmPaths } from './cmdline.js';
import { readExitStatus, waitExitStatus } from './exit-status.js';
import { isProcessAlive, waitForExit } from './proc.js';
import { QmpClient, type QmpEvent } from './qmp.js';
import type { VmEvent, VmHandle } from './types.js';

export interface QemuVmOptions {
  readonly handle: VmHandle;
  readonly paths: VmPaths;
  readonly logger: Logger;
  /** The subject of subscribers that came before the VM was known, if any: this VM feeds them. */
  readonly events: Subject<VmEvent> | undefined;
  /** With a reaper, a QEMU that vanished unasked has its exit status written just after: worth waiting for. */
  readonly reaperBinary: string | undefined;
  /** False once the hypervisor forgot or replaced this VM: a QMP session lost later must not revive it. */
  readonly isCurrent: () => boolean;
}

/**
 * A known VM. `exitReason` is set once the process is known to be gone; then `events` has sent `exited` and
 * completed and `exited` has resolved. The hypervisor sets `ending` before it ends the process itself.
 */
export class QemuVm {
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
  readonly #resolveExited: () => void;
  readonly #reaperBinary: string | undefined;
  readonly #isCurrent: () => boolean;

  constructor(options: QemuVmOptions) {
    this.handle = options.handle;
    this.paths = options.paths;
    this.logger = options.logger;
    this.events = options.events ?? new Subject<VmEvent>();
    this.#reaperBinary = options.reaperBinary;
    this.#isCurrent = options.isCurrent;
    let resolveExited!: () => void;
    this.exited = new Promise<void>((resolve) => {
      resolveExited = resolve;
    });
    this.#resolveExited = resolveExited;
  }

  /** Starts watching the VM: QMP events from `qmp`, and the process every `monitorIntervalMs`. */
  watch(qmp: QmpClient, monitorIntervalMs: number): void {
    this.#useQmp(qmp);
    this.monitor = setInterval(() => void this.checkAlive(), monitorIntervalMs);
    this.monitor.unref();
  }

  #useQmp(qmp: QmpClient): void {
    this.qmp = qmp;
    qmp.events.subscribe((event) => this.#onQmpEvent(event));
    void qmp.closed.then(async () => {
      if (this.qmp === qmp) this.qmp = undefined;
      if (this.exitReason !== undefined || !this.#isCurrent()) return;
      // QEMU closes the monitor as it exits: look closely for a while instead of waiting for the next tick.
      if (await waitForExit(this.handle.pid, this.handle.pidStartTime, 2_000)) {
        await this.checkAlive();
        return;
      }
      // Still running with its monitor gone from under us: dial again, as after a daemon restart.
      if (this.exitReason !== undefined || this.ending !== undefined || this.qmp !== undefined) return;
      if (!this.#isCurrent()) return;
      try {
        const again = await QmpClient.connect(this.paths.qmpSocket, { timeoutMs: 5_000 });
        if (!this.#isCurrent() || this.exitReason !== undefined) {
          again.close();
          return;
        }
        this.#useQmp(again);
        this.logger.info({ step: 'qmp reconnect' }, 'QMP session lost while the VM runs: reconnected');
      } catch (err) {
        this.logger.warn({ step: 'qmp reconnect', err }, 'QMP session lost and could not be re-established');
      }
    });
  }

  #onQmpEvent(event: QmpEvent): void {
    this.logger.debug({ step: 'qmp event', event: event.event, data: event.data }, 'QMP event');
    switch (event.event) {
      case 'STOP':
        this.events.next({ type: 'paused' });
        break;
      case 'RESUME':
        this.events.next({ type: 'resumed' });
        break;
      case 'GUEST_PANICKED':
        this.events.next({ type: 'panicked' });
        break;
      case 'DEVICE_DELETED': {
        const device = event.data.device ?? event.data.path;
        this.events.next({ type: 'deviceDeleted', device: String(device ?? '') });
        break;
      }
      case 'SHUTDOWN':
        this.shutdownReason = String(event.data.reason ?? 'unknown');
        break;
      default:
        // ACPI_DEVICE_OST and friends: logged above, not part of VmEvent.
        break;
    }
  }

  /** Marks the VM exited when its process is gone (a zombie or a reused pid counts as gone). */
  async checkAlive(): Promise<void> {
    if (this.exitReason !== undefined) return;
    if (await isProcessAlive(this.handle.pid, this.handle.pidStartTime)) return;
    // Nobody asked it to go and it said no SHUTDOWN: how it ended is what the reaper writes, just after.
    if (this.ending === undefined && this.shutdownReason === undefined && this.#reaperBinary) {
      await waitExitStatus(this.paths.exitStatus, 500);
    }
    this.markExited();
  }

  /** Records the exit (once), named by SHUTDOWN, by `ending`, or by the reaper; sends `exited` and completes. */
  markExited(): void {
    if (this.exitReason !== undefined) return;
    const reason =
      this.shutdownReason !== undefined
        ? `shutdown: ${this.shutdownReason}`
        : (this.ending ?? readExitStatus(this.paths.exitStatus) ?? 'QEMU process disappeared');
    this.exitReason = reason;
    if (this.monitor) clearInterval(this.monitor);
    this.monitor = undefined;
    this.qmp?.close();
    this.qmp = undefined;
    const level = this.ending === undefined && this.shutdownReason === undefined ? 'warn' : 'info';
    this.logger[level]({ step: 'monitor', pid: this.handle.pid, reason }, 'VM exited');
    this.events.next({ type: 'exited', reason });
    this.events.complete();
    this.#resolveExited();
  }

  /** Marks the exit of a process known to be gone and waits until it is recorded. */
  async settleExit(): Promise<void> {
    this.markExited();
    await this.exited;
  }

  /** Stops watching without touching the process (QMP closed, monitor stopped); `events` completes. */
  unwatch(): void {
    if (this.monitor) clearInterval(this.monitor);
    this.qmp?.close();
    this.events.complete();
  }
}
