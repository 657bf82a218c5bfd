// The exec lifecycle machine: a process started in a running container (at once, or registered first), until it
// exits and, once a client deletes its record, deleted.
import { assign, setup } from 'xstate';
import type { ExecEvent, ExecEventData } from '../events/index.js';
import { addDrop, type Fed, type LastFailure, type OutputDrops } from './common.js';
import { LOST_EXIT_CODE } from './container.js';

export interface ExecExit {
  readonly exitCode: number;
  readonly signal?: string;
  readonly oomKilled?: boolean;
}

export interface ExecContext {
  readonly sandboxId: string;
  readonly containerId: string;
  readonly execId: string;
  /** The lives of the sandbox, container and exec ids (absent: the first; see lifeOf). */
  readonly sandboxIncarnation?: number;
  readonly containerIncarnation?: number;
  readonly incarnation?: number;
  readonly process: ExecEventData['ExecRequested']['process'];
  readonly pid?: number;
  readonly exit?: ExecExit;
  /** Output the guest dropped while nobody read (ProcessOutputDropped). */
  readonly outputDropped?: OutputDrops;
  readonly error?: LastFailure;
}

export type ExecMachineEvent = Fed<ExecEvent>;

/** Effects bound by the runtime: startProcess → ExecStarted | ExecStartFailed. */
export const execEffects = ['startProcess'] as const;
export type ExecEffect = (typeof execEffects)[number];

const ended = {
  ProcessOutputDropped: { actions: 'dropped' },
  ProcessExited: { target: '#exec.exited', actions: 'exited' },
  ProcessExitedWhileDaemonDown: { target: '#exec.exited', actions: 'exited' },
  ProcessLost: { target: '#exec.exited', actions: 'lost' },
} as const;

export const execMachine = setup({
  types: {} as { context: ExecContext; events: ExecMachineEvent },
  actions: {
    startProcess: () => {},
    exited: assign(({ event }) => {
      if (event.type !== 'ProcessExited' && event.type !== 'ProcessExitedWhileDaemonDown') return {};
      const { exitCode, signal, oomKilled } = event.data;
      const exit: ExecExit = { exitCode };
      return {
        exit: { ...exit, ...(signal === undefined ? {} : { signal }), ...(oomKilled ? { oomKilled } : {}) },
      };
    }),
    dropped: assign(({ context, event }) =>
      event.type === 'ProcessOutputDropped'
        ? { outputDropped: addDrop(context.outputDropped, event.data) }
        : {},
    ),
    lost: assign({ exit: { exitCode: LOST_EXIT_CODE, signal: 'SIGKILL' } }),
    requested: assign(({ event }) => {
      if (event.type !== 'ExecRequested' && event.type !== 'ExecCreated') return {};
      const d = event.data;
      return {
        sandboxId: d.sandboxId,
        containerId: d.containerId,
        execId: d.execId,
        ...(d.sandboxIncarnation ? { sandboxIncarnation: d.sandboxIncarnation } : {}),
        ...(d.containerIncarnation ? { containerIncarnation: d.containerIncarnation } : {}),
        ...(d.incarnation ? { incarnation: d.incarnation } : {}),
        process: d.process,
      };
    }),
  },
}).createMachine({
  id: 'exec',
  initial: 'absent',
  context: { sandboxId: '', containerId: '', execId: '', process: { args: ['?'] } },
  states: {
    absent: {
      on: {
        ExecRequested: { target: 'starting', actions: 'requested' },
        ExecCreated: { target: 'created', actions: 'requested' },
      },
    },
    /** Registered, waiting for its start (or its delete); the container's end takes it along. */
    created: {
      on: {
        ExecStartRequested: { target: 'starting' },
        ProcessLost: { target: 'exited', actions: 'lost' },
        ExecDeleted: { target: 'deleted' },
      },
    },
    /** The exit may be reported before the start's reply: both orders end in `exited`. */
    starting: {
      tags: ['live', 'transitional'],
      entry: 'startProcess',
      on: {
        ExecStarted: { target: 'running', actions: assign(({ event }) => ({ pid: event.data.pid })) },
        ExecStartFailed: {
          target: 'failed',
          actions: assign(({ event }) => ({ error: event.data.error })),
        },
        ...ended,
      },
    },
    running: {
      tags: ['live', 'serving'],
      on: { ...ended },
    },
    exited: {
      tags: ['ended'],
      on: { ExecDeleted: { target: 'deleted' }, ProcessOutputDropped: { actions: 'dropped' } },
    },
    failed: {
      tags: ['ended'],
      on: { ExecDeleted: { target: 'deleted' } },
    },
    deleted: { type: 'final' },
  },
});
