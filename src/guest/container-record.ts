// What the guest's container flows share: where things live (GuestPaths), one container's record, and the context
// (paths, event log, logger, crun timings, terminals) that create, exec, exit and removal are handed.
import { closeSync } from 'node:fs';
import type { Logger } from 'pino';
import { InvalidArgument } from '../errors/index.js';
import type { GuestEventLog } from './events.js';
import type { OciProcess, OciSpec } from './oci-spec.js';
import type { CrunTimings, GuestProcess } from './process.js';

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

export type ContainerStatus = 'created' | 'running' | 'paused' | 'stopped';

/** One container of the sandbox: its crun monitor (init), its execs, its start gate and its cgroups. */
export interface Container {
  readonly id: string;
  status: ContainerStatus;
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

/** What the container flows need of the agent, whichever container they act on. */
export interface GuestContext {
  readonly paths: GuestPaths;
  readonly events: GuestEventLog;
  readonly logger: Logger;
  /** Wall time crun itself took (see CrunTimings), for the agent's metrics. */
  readonly timings: CrunTimings;
  /** Starts the terminal helper for `process`; resolves the console socket to hand crun once the helper listens. */
  readonly openTerminal: (
    container: Container,
    process: GuestProcess,
    size: OciProcess['consoleSize'],
  ) => Promise<string>;
}

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Container and exec ids become file names and crun ids: throws InvalidArgument naming `field` otherwise. */
export function checkId(field: string, id: string): void {
  if (!ID_PATTERN.test(id)) throw new InvalidArgument(field, 'must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}');
}

/** Closes our end of the start gate, once. */
export function closeGate(container: Container): void {
  if (container.gateFd !== undefined) {
    closeSync(container.gateFd);
    container.gateFd = undefined;
  }
}

/** Drops `container` from the table, with its OOM watch and start gate. */
export function forgetContainer(containers: Map<string, Container>, container: Container): void {
  container.stopWatching?.();
  closeGate(container);
  containers.delete(container.id);
}
