// What the actor runtime is given (options, deadlines) and what it reports (recovery); see index.ts.
import type { Logger } from 'pino';
import type { Agent } from '../agent/index.js';
import type { GuestImagePaths, Hypervisor } from '../hypervisor/index.js';
import type { ContainerEffect, ExecEffect, SandboxEffect } from '../machines/index.js';
import type { EventStore } from '../store/index.js';
import type { Runtime } from './types.js';
import type { VmShape } from './vm-config.js';

/** A saved VM a sandbox can be restored from instead of booted (issue 18; src/templates builds them). */
export interface VmTemplateRef {
  /** The hash of what the saved state depends on (image, QEMU, accelerator, shape, network mode). */
  readonly id: string;
  readonly stateFile: string;
  /** The guest image the template booted: on another image the sandbox boots cold. */
  readonly imageVersion: string;
  /** The template's kernel params: a clone's command line must match its template's device for device. */
  readonly kernelParams: readonly string[];
}

/** The VM shape and network mode a template is looked up by (netns VMs always boot cold). */
export interface VmTemplateShape extends VmShape {
  readonly network: 'none' | 'user';
}

/** Where sandbox starts find templates (the daemon: its TemplateStore, with --templates). */
export interface VmTemplates {
  /** The template a VM of `shape` would be restored from now, if one is built. */
  find(shape: VmTemplateShape): Promise<VmTemplateRef | undefined>;
}

/** Every effect has its deadline (a new effect without one does not compile), plus the runtime's own waits. */
export type TimeoutName =
  | SandboxEffect
  | ContainerEffect
  | ExecEffect
  /** Reconciliation of one sandbox after a restart. */
  | 'reconcile'
  /** How long shutdown waits for effects in flight. */
  | 'shutdown'
  /** Agent calls made directly for a command (stats, ps, kill, …). */
  | 'call';

/** Generous defaults: TCG boots take 5–20 s on these machines, more under load. */
export const defaultTimeouts: Readonly<Record<TimeoutName, number>> = {
  launchVm: 90_000,
  connectAgent: 90_000,
  initGuest: 30_000,
  releaseVm: 30_000,
  pauseVm: 15_000,
  /** Also covers comparing the containers of a sandbox found paused at recovery with its guest. */
  resumeVm: 60_000,
  stopVm: 60_000,
  destroyVm: 60_000,
  createContainer: 60_000,
  startContainer: 30_000,
  pauseContainer: 15_000,
  resumeContainer: 15_000,
  removeContainer: 30_000,
  updateContainer: 30_000,
  updateGuestNetwork: 30_000,
  startProcess: 30_000,
  reconcile: 30_000,
  shutdown: 15_000,
  call: 30_000,
  /** sandbox.update: until the guest shows the vCPUs and memory QEMU hotplugged. */
  resizeVm: 60_000,
  /** sandbox.networkRefresh: NICs unplugged (the guest lets go) and plugged until the guest shows them. */
  refreshNetwork: 90_000,
};

export interface RuntimeOptions {
  readonly store: EventStore;
  readonly hypervisor: Hypervisor;
  readonly agent: Agent;
  /** Root of per-sandbox dirs: `<stateDir>/sandboxes/<id>/{vm,shared}`. */
  readonly stateDir: string;
  /** The guest image to boot; required only once a sandbox starts. */
  readonly image?: () => Promise<GuestImagePaths>;
  /** Templates to restore sandboxes from; absent: every sandbox boots cold. */
  readonly templates?: VmTemplates;
  readonly logger?: Logger;
  /** Per-effect deadlines in ms (an expired effect appends its …Failed event). */
  readonly timeouts?: Partial<Record<TimeoutName, number>>;
  /**
   * false: replay only — no reconciliation, no effects, commands refused (offline tools, benchmarks).
   * Default true.
   */
  readonly effects?: boolean;
  /** Load from stored snapshots + tails (default true); false folds the whole log from seq 1. */
  readonly snapshots?: boolean;
  /** How many sandboxes reconcile at once after a restart (default 8). */
  readonly reconcileConcurrency?: number;
  /**
   * Save an entity's snapshot once this many events followed its last one and it rests in a
   * non-transitional state (default 16; 0 = only on shutdown / saveSnapshots()).
   */
  readonly snapshotEvery?: number;
  /**
   * Make each effect's intent visible to the ports it calls, as currentIntent() (idempotency keys for fakes
   * and tracing). Off by default: on Node 20 AsyncLocalStorage turns on promise hooks for the whole process,
   * which cost the daemon ~20% of its API throughput (bench:api).
   */
  readonly traceIntents?: boolean;
}

/** What loading and reconciling found; `createRuntime` resolves after both. */
export interface RecoveryReport {
  readonly sandboxes: number;
  readonly containers: number;
  readonly execs: number;
  /** Events folded through machines while loading (snapshot tails, or the whole log). */
  readonly eventsReplayed: number;
  readonly snapshotsUsed: number;
  readonly loadMs: number;
  readonly reconcileMs: number;
  readonly reattached: readonly string[];
  readonly lost: readonly string[];
  /** Entities whose in-flight intent was settled (completed, retried or failed). */
  readonly settled: readonly { stream: string; from: string; how: 'completed' | 'retried' | 'failed' }[];
  /** Events appended by reconciliation. */
  readonly appended: number;
  readonly errors: readonly { sandboxId: string; message: string }[];
}

export interface RuntimeHandle extends Runtime {
  /** The report of the recovery `createRuntime` ran. */
  readonly recovery: RecoveryReport;
  /** Reconciles every sandbox with the world again (what startup did after loading). */
  reconcile(): Promise<RecoveryReport>;
  /** Saves a snapshot of every entity changed since its last one (also done by shutdown). */
  saveSnapshots(): Promise<number>;
  /** Resolves once no effect is in flight and every entity's queue is empty (tests, orderly shutdown). */
  idle(): Promise<void>;
}
