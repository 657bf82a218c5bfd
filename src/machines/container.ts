// The container lifecycle machine: created → running ⇄ paused → stopped → deleted, with exit status and OOM flag.
import { assign, setup } from 'xstate';
import type { ContainerEvent, ContainerEventData } from '../events/index.js';
import { addDrop, type Fed, type LastFailure, type OutputDrops } from './common.js';

type Request = ContainerEventData['ContainerCreateRequested'];

export interface ContainerExit {
  readonly exitCode: number;
  readonly signal?: string;
  readonly oomKilled: boolean;
}

export interface ContainerContext {
  readonly sandboxId: string;
  readonly containerId: string;
  /** The lives of the sandbox and container ids (absent: the first; see lifeOf). */
  readonly sandboxIncarnation?: number;
  readonly incarnation?: number;
  readonly bundle: string;
  readonly process?: Request['process'];
  readonly resources?: Request['resources'];
  readonly mounts?: Request['mounts'];
  readonly createdAt: string;
  /** The bundle's annotations and whether its process has a terminal, as the create saw them. */
  readonly annotations?: Request['annotations'];
  readonly terminal?: boolean;
  /** Pid of the init process in the guest, once created. */
  readonly pid?: number;
  readonly exit?: ContainerExit;
  /** When the init started and when it ended (the times of those events), once known. */
  readonly startedAt?: string;
  readonly exitedAt?: string;
  /** An OOM kill was seen in this container (it may arrive before or after the exit). */
  readonly oomKilled: boolean;
  /** Resources asked for (ContainerUpdateRequested) whose outcome is not in the log yet: recovery applies them again. */
  readonly updating?: Request['resources'];
  /** The host CPUs this container asked for (bundle or create, then updates): its part of the VM's pinning. */
  readonly cpusetCpus?: string;
  /** Output the guest dropped while nobody read (ContainerOutputDropped). */
  readonly outputDropped?: OutputDrops;
  readonly error?: LastFailure;
}

export type ContainerMachineEvent = Fed<ContainerEvent>;

/**
 * Effects bound by the runtime: createContainer → ContainerCreated | ContainerCreateFailed;
 * startContainer → ContainerStarted | ContainerStartFailed; pauseContainer → ContainerPaused | …Failed;
 * resumeContainer → ContainerResumed | …Failed; removeContainer → ContainerDeleted | ContainerDeleteFailed;
 * updateContainer → ContainerUpdated | ContainerUpdateFailed.
 */
export const containerEffects = [
  'createContainer',
  'startContainer',
  'pauseContainer',
  'resumeContainer',
  'removeContainer',
  'updateContainer',
] as const;
export type ContainerEffect = (typeof containerEffects)[number];

const noEffect = () => {};

/** Exit code a container gets when it vanished without telling how (its VM died, the agent forgot it). */
export const LOST_EXIT_CODE = 255;

const ended = {
  ContainerExited: { target: '#container.stopped', actions: 'exited' },
  ContainerExitedWhileDown: { target: '#container.stopped', actions: 'exited' },
  ContainerLost: { target: '#container.stopped', actions: 'lost' },
} as const;
/** Resources changed while the init lives: one update at a time (the command holds the container's turn). */
const update = {
  ContainerUpdateRequested: { guard: 'idle', actions: ['updateAsked', 'updateContainer'] },
  ContainerUpdated: { actions: 'updated' },
  ContainerUpdateFailed: { actions: ['remember', 'updateSettled'] },
} as const;
const forceDelete = { ContainerDeleteRequested: { guard: 'forced', target: '#container.deleting' } } as const;

export const containerMachine = setup({
  types: {} as { context: ContainerContext; events: ContainerMachineEvent },
  actions: {
    createContainer: noEffect,
    startContainer: noEffect,
    pauseContainer: noEffect,
    resumeContainer: noEffect,
    removeContainer: noEffect,
    updateContainer: noEffect,
    remember: assign(({ event }) => ('error' in event.data ? { error: event.data.error } : {})),
    exited: assign(({ context, event }) => {
      if (event.type !== 'ContainerExited' && event.type !== 'ContainerExitedWhileDown') return {};
      const { exitCode, signal, oomKilled } = event.data;
      const exit: ContainerExit = { exitCode, oomKilled: oomKilled || context.oomKilled };
      return {
        exit: signal === undefined ? exit : { ...exit, signal },
        oomKilled: exit.oomKilled,
        ...(event.at ? { exitedAt: event.at } : {}),
      };
    }),
    lost: assign(({ context, event }) => ({
      exit: { exitCode: LOST_EXIT_CODE, signal: 'SIGKILL', oomKilled: context.oomKilled },
      ...(event.at ? { exitedAt: event.at } : {}),
    })),
    started: assign(({ event }) => (event.at ? { startedAt: event.at } : {})),
    oom: assign(({ context }) => ({
      oomKilled: true,
      ...(context.exit ? { exit: { ...context.exit, oomKilled: true } } : {}),
    })),
    dropped: assign(({ context, event }) =>
      event.type === 'ContainerOutputDropped'
        ? { outputDropped: addDrop(context.outputDropped, event.data) }
        : {},
    ),
    updated: assign(({ event }) =>
      event.type === 'ContainerUpdated'
        ? {
            resources: event.data.resources,
            updating: undefined,
            ...(event.data.resources.cpusetCpus ? { cpusetCpus: event.data.resources.cpusetCpus } : {}),
          }
        : {},
    ),
    updateAsked: assign(({ event }) =>
      event.type === 'ContainerUpdateRequested' ? { updating: event.data.resources } : {},
    ),
    updateSettled: assign({ updating: undefined }),
  },
  guards: {
    idle: ({ context }) => context.updating === undefined,
    // Only an init that was started: one killed at the start gate never ran (its view keeps no exit).
    ranWithoutExit: ({ context }) => context.exit === undefined && context.startedAt !== undefined,
    forced: ({ event }) => event.type === 'ContainerDeleteRequested' && event.data.force,
  },
}).createMachine({
  id: 'container',
  initial: 'absent',
  context: { sandboxId: '', containerId: '', bundle: '', createdAt: '', oomKilled: false },
  states: {
    absent: {
      on: {
        ContainerCreateRequested: {
          target: 'creating',
          actions: assign(({ event }) => ({
            sandboxId: event.data.sandboxId,
            containerId: event.data.containerId,
            ...(event.data.sandboxIncarnation ? { sandboxIncarnation: event.data.sandboxIncarnation } : {}),
            ...(event.data.incarnation ? { incarnation: event.data.incarnation } : {}),
            bundle: event.data.bundle,
            ...(event.data.annotations ? { annotations: event.data.annotations } : {}),
            ...(event.data.terminal ? { terminal: true } : {}),
            process: event.data.process,
            resources: event.data.resources,
            ...(event.data.mounts ? { mounts: event.data.mounts } : {}),
            createdAt: event.at ?? '',
          })),
        },
      },
    },
    creating: {
      tags: ['transitional'],
      entry: 'createContainer',
      on: {
        ContainerCreated: {
          target: 'created',
          actions: assign(({ event }) => ({
            pid: event.data.pid,
            ...(event.data.cpusetCpus ? { cpusetCpus: event.data.cpusetCpus } : {}),
          })),
        },
        ContainerCreateFailed: { target: 'failed', actions: 'remember' },
        ContainerLost: { target: 'failed', actions: 'lost' },
        ...forceDelete,
      },
    },
    created: {
      on: {
        ContainerStartRequested: { target: 'starting' },
        ContainerDeleteRequested: { target: 'deleting' },
        ...update,
        ...ended,
      },
    },
    starting: {
      tags: ['live', 'transitional'],
      entry: 'startContainer',
      on: {
        ContainerStarted: { target: 'running', actions: 'started' },
        ContainerStartFailed: { target: 'failed', actions: 'remember' },
        ContainerOomKilled: { actions: 'oom' },
        ContainerOutputDropped: { actions: 'dropped' },
        ...ended,
        ...forceDelete,
      },
    },
    running: {
      tags: ['live', 'serving'],
      on: {
        ContainerPauseRequested: { target: 'pausing' },
        ...update,
        ContainerOomKilled: { actions: 'oom' },
        ContainerOutputDropped: { actions: 'dropped' },
        ...ended,
        ...forceDelete,
      },
    },
    pausing: {
      tags: ['live', 'transitional'],
      entry: 'pauseContainer',
      on: {
        ContainerPaused: { target: 'paused' },
        ContainerPauseFailed: { target: 'running', actions: 'remember' },
        ContainerOomKilled: { actions: 'oom' },
        ContainerOutputDropped: { actions: 'dropped' },
        ...ended,
        ...forceDelete,
      },
    },
    paused: {
      tags: ['live'],
      on: {
        ContainerResumeRequested: { target: 'resuming' },
        ...update,
        ContainerOomKilled: { actions: 'oom' },
        ContainerOutputDropped: { actions: 'dropped' },
        ...ended,
        ...forceDelete,
      },
    },
    resuming: {
      tags: ['live', 'transitional'],
      entry: 'resumeContainer',
      on: {
        ContainerResumed: { target: 'running' },
        ContainerResumeFailed: { target: 'paused', actions: 'remember' },
        ContainerOomKilled: { actions: 'oom' },
        ContainerOutputDropped: { actions: 'dropped' },
        ...ended,
        ...forceDelete,
      },
    },
    stopped: {
      tags: ['ended'],
      on: {
        ContainerDeleteRequested: { target: 'deleting' },
        // An update's outcome can trail the exit: the guest did (or did not) apply it, and the log says so.
        ContainerUpdated: { actions: 'updated' },
        ContainerUpdateFailed: { actions: ['remember', 'updateSettled'] },
        // The cgroup's OOM report can trail the exit.
        ContainerOomKilled: { actions: 'oom' },
        ContainerOutputDropped: { actions: 'dropped' },
      },
    },
    /** Create or start failed: only delete is left (it removes whatever the guest kept). */
    failed: {
      tags: ['ended'],
      on: { ContainerDeleteRequested: { target: 'deleting' } },
    },
    deleting: {
      tags: ['ended', 'transitional'],
      entry: 'removeContainer',
      on: {
        // A forced delete kills a live init: its end is a fact of this life (docker rm -f shows 137).
        ContainerExited: { guard: 'ranWithoutExit', actions: 'exited' },
        ContainerDeleted: { target: 'deleted' },
        ContainerDeleteFailed: { target: 'failed', actions: 'remember' },
      },
    },
    deleted: {
      tags: ['ended'],
      type: 'final',
    },
  },
});
