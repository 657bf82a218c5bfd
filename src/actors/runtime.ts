// The actor runtime the API drives: the kernel (kernel.ts) records and acts; the commands (commands/) check
// and ask; recovery (recovery.ts) settles what a restart found. This class only puts them behind Runtime.

import type { Observable } from 'rxjs';
import type {
  ContainerResources,
  ContainerStats,
  ExitStatus,
  GuestDetails,
  NetInterface,
  NetRoute,
  ProcessInfo,
  ProcessSpec,
} from '../agent/index.js';
import type { VmUsage } from '../hypervisor/index.js';
import { withDeadline } from '../timing/index.js';
import { container, exec, guest, sandbox } from './commands/index.js';
import { recordOutputDropped } from './commands/output.js';
import type { SandboxActor } from './entity.js';
import { Kernel } from './kernel.js';
import { reconcileAll, reconcileContainers } from './recovery.js';
import type { ResizeRequest } from './resize.js';
import type { RecoveryReport, RuntimeHandle } from './runtime-options.js';
import type {
  ContainerView,
  CreateContainerParams,
  ExecView,
  OutputDropReport,
  SandboxConfig,
  SandboxStats,
  SandboxView,
} from './types.js';
import { containerView, execView, sandboxView } from './views.js';

export class ActorRuntime extends Kernel implements RuntimeHandle {
  recovery!: RecoveryReport;

  reconcile(): Promise<RecoveryReport> {
    return reconcileAll(this);
  }

  /**
   * The containers of a sandbox found paused at recovery are compared with its guest while it is
   * still resuming: once it runs, commands create and start containers that recovery must not take
   * for ones whose intent never settled (it would run their effect a second time, or declare them lost).
   */
  protected override async afterResume(s: SandboxActor): Promise<void> {
    if (!this.containersUnchecked.delete(s.id)) return;
    try {
      await withDeadline(reconcileContainers(this, s), this.timeouts.reconcile, 'reconcile');
    } catch (err) {
      this.logger.error({ sandboxId: s.id, err }, 'reconciling containers after resume failed');
    }
  }

  // ---- sandboxes ---------------------------------------------------------------------------------

  createSandbox(id: string, config: SandboxConfig): Promise<SandboxView> {
    return sandbox.createSandbox(this, id, config);
  }
  startSandbox(id: string): Promise<SandboxView> {
    return sandbox.startSandbox(this, id);
  }
  stopSandbox(id: string, options: { timeoutMs?: number } = {}): Promise<SandboxView> {
    return sandbox.stopSandbox(this, id, options);
  }
  pauseSandbox(id: string): Promise<SandboxView> {
    return sandbox.pauseSandbox(this, id);
  }
  resumeSandbox(id: string): Promise<SandboxView> {
    return sandbox.resumeSandbox(this, id);
  }
  deleteSandbox(id: string, options: { force?: boolean } = {}): Promise<void> {
    return sandbox.deleteSandbox(this, id, options);
  }
  updateSandbox(id: string, request: ResizeRequest): Promise<SandboxView> {
    return sandbox.updateSandbox(this, id, request);
  }
  refreshNetwork(id: string): Promise<SandboxView> {
    return sandbox.refreshNetwork(this, id);
  }
  getSandbox(id: string): SandboxView {
    return sandboxView(this.sandbox(id));
  }
  listSandboxes(): SandboxView[] {
    return [...this.sandboxes.values()].filter((s) => s.state !== 'absent').map(sandboxView);
  }
  vmUsage(id: string): Promise<VmUsage | undefined> {
    return sandbox.vmUsage(this, id);
  }
  sandboxStats(id: string): Promise<SandboxStats> {
    return sandbox.sandboxStats(this, id);
  }

  // ---- containers --------------------------------------------------------------------------------

  createContainer(params: CreateContainerParams): Promise<ContainerView> {
    return container.createContainer(this, params);
  }
  startContainer(sandboxId: string, id: string): Promise<ContainerView> {
    return container.startContainer(this, sandboxId, id);
  }
  killContainer(sandboxId: string, id: string, signal: string, all = false): Promise<void> {
    return container.killContainer(this, sandboxId, id, signal, all);
  }
  deleteContainer(sandboxId: string, id: string, options: { force?: boolean } = {}): Promise<ContainerView> {
    return container.deleteContainer(this, sandboxId, id, options);
  }
  pauseContainer(sandboxId: string, id: string): Promise<ContainerView> {
    return container.pauseContainer(this, sandboxId, id);
  }
  resumeContainer(sandboxId: string, id: string): Promise<ContainerView> {
    return container.resumeContainer(this, sandboxId, id);
  }
  getContainer(sandboxId: string, id: string): ContainerView {
    return containerView(this.container(sandboxId, id));
  }
  listContainers(sandboxId: string): ContainerView[] {
    return [...this.sandbox(sandboxId).containers.values()]
      .filter((c) => c.state !== 'absent')
      .map(containerView);
  }
  containerStats(sandboxId: string, id: string): Promise<ContainerStats> {
    return container.containerStats(this, sandboxId, id);
  }
  updateContainer(sandboxId: string, id: string, resources: ContainerResources): Promise<ContainerView> {
    return container.updateContainer(this, sandboxId, id, resources);
  }
  containerPs(sandboxId: string, id: string): Promise<ProcessInfo[]> {
    return container.containerPs(this, sandboxId, id);
  }
  waitContainer(sandboxId: string, id: string): Promise<ExitStatus> {
    return container.waitContainer(this, sandboxId, id);
  }

  // ---- execs and stdio ---------------------------------------------------------------------------

  startExec(
    sandboxId: string,
    containerId: string,
    execId: string,
    process?: ProcessSpec,
  ): Promise<ExecView> {
    return exec.startExec(this, sandboxId, containerId, execId, process);
  }
  createExec(
    sandboxId: string,
    containerId: string,
    execId: string,
    process: ProcessSpec,
  ): Promise<ExecView> {
    return exec.createExec(this, sandboxId, containerId, execId, process);
  }
  deleteExec(sandboxId: string, containerId: string, execId: string): Promise<void> {
    return exec.deleteExec(this, sandboxId, containerId, execId);
  }
  waitExec(sandboxId: string, containerId: string, execId: string): Promise<ExitStatus> {
    return exec.waitExec(this, sandboxId, containerId, execId);
  }
  killExec(sandboxId: string, containerId: string, execId: string, signal: string): Promise<void> {
    return exec.killExec(this, sandboxId, containerId, execId, signal);
  }
  resizeExec(
    sandboxId: string,
    containerId: string,
    execId: string,
    rows: number,
    cols: number,
  ): Promise<void> {
    return exec.resizeExec(this, sandboxId, containerId, execId, rows, cols);
  }
  getExec(sandboxId: string, containerId: string, execId: string): ExecView {
    return execView(this.exec(sandboxId, containerId, execId));
  }
  output(
    sandboxId: string,
    containerId: string,
    execId: string,
    stream: 'stdout' | 'stderr',
  ): Observable<Uint8Array> {
    return exec.output(this, sandboxId, containerId, execId, stream);
  }
  writeStdin(sandboxId: string, containerId: string, execId: string, data: Uint8Array): Promise<number> {
    return exec.writeStdin(this, sandboxId, containerId, execId, data);
  }
  closeStdin(sandboxId: string, containerId: string, execId: string): Promise<void> {
    return exec.closeStdin(this, sandboxId, containerId, execId);
  }
  recordOutputDropped(report: OutputDropReport): Promise<boolean> {
    return recordOutputDropped(this, report);
  }

  // ---- the guest ---------------------------------------------------------------------------------

  guestDetails(sandboxId: string): Promise<GuestDetails> {
    return guest.guestDetails(this, sandboxId);
  }
  listInterfaces(sandboxId: string): Promise<NetInterface[]> {
    return guest.listInterfaces(this, sandboxId);
  }
  listRoutes(sandboxId: string): Promise<NetRoute[]> {
    return guest.listRoutes(this, sandboxId);
  }
  updateInterface(sandboxId: string, iface: NetInterface): Promise<NetInterface> {
    return guest.updateInterface(this, sandboxId, iface);
  }
  updateRoutes(sandboxId: string, routes: readonly NetRoute[]): Promise<NetRoute[]> {
    return guest.updateRoutes(this, sandboxId, routes);
  }
  setGuestTime(sandboxId: string, time?: Date): Promise<Date> {
    return guest.setGuestTime(this, sandboxId, time);
  }
  reseedGuestRandom(sandboxId: string, seed?: Uint8Array): Promise<number> {
    return guest.reseedGuestRandom(this, sandboxId, seed);
  }
  copyFile(sandboxId: string, path: string, data: Uint8Array, mode?: number): Promise<void> {
    return guest.copyFile(this, sandboxId, path, data, mode);
  }
  metrics(sandboxId: string): Promise<string> {
    return guest.metrics(this, sandboxId);
  }
}

export type { Entity } from './entity.js';
