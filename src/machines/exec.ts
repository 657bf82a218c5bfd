// The exec lifecycle machine: a process started in a running container, until it exits.
import { assign, setup } from 'xstate';
import type { ExecEvent, ExecEventData } from '../events/index.js';
import type { Fed, LastFailure } from './common.js';
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
  readonly process: ExecEventData['ExecRequested']['process'];
  readonly pid?: number;
  readonly exit?: ExecExit;
  readonly error?: LastFailure;
}

export type ExecMachineEvent = Fed<ExecEvent>;

/** Effects bound by the runtime: startProcess → ExecStarted | ExecStartFailed. */
export const execEffects = ['startProcess'] as const;
export type ExecEffect = (typeof execEffects)[number];

const ended = {
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
    lost: assign({ exit: { exitCode: LOST_EXIT_CODE, signal: 'SIGKILL' } }),
  },
}).createMachine({
  id: 'exec',
  initial: 'absent',
  context: { sandboxId: '', containerId: '', execId: '', process: { args: ['?'] } },
  states: {
    absent: {
      on: {
        ExecRequested: {
          target: 'starting',
          actions: assign(({ event }) => ({
            sandboxId: event.data.sandboxId,
            containerId: event.data.containerId,
            execId: event.data.execId,
            process: event.data.process,
          })),
        },
      },
    },
    /** The exit may be reported before the start's reply: both orders end in `exited`. */
    starting: {
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
    running: { on: { ...ended } },
    exited: { type: 'final' },
    failed: { type: 'final' },
  },
});
