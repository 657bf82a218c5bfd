// Exit codes scripts can rely on: one per error kind, stable (documented in README and `sandboxctl --help`).
import { DaemonUnreachable, RpcCallError } from '../api/index.js';
import { SandboxdError } from '../errors/index.js';

export const EXIT = {
  OK: 0,
  /** Internal or unexpected failure. */
  FAILURE: 1,
  /** Bad usage or invalid argument (also the daemon's -32600/-32601/-32602). */
  USAGE: 2,
  NOT_FOUND: 3,
  ALREADY_EXISTS: 4,
  /** The entity's state does not allow the command. */
  INVALID_STATE: 5,
  CONFLICT: 6,
  TIMEOUT: 7,
  /** The hypervisor or the guest agent failed. */
  UNAVAILABLE: 8,
  /** No daemon answers on the socket. */
  DAEMON_UNREACHABLE: 9,
  /** Another sandboxd holds the state dir or socket. */
  STATE_DIR_IN_USE: 10,
  /** `events verify` found problems, or stored data is corrupt. */
  CORRUPTION: 11,
  /** `run`: sandboxd failed before the container's exit code was known (like docker's 125). */
  RUN_FAILED: 125,
} as const;

export const exitCodeDocs = `Exit codes: 0 ok, 1 internal failure, 2 usage/invalid argument, 3 not found,
4 already exists, 5 invalid state, 6 conflict, 7 timeout, 8 hypervisor/agent failure,
9 daemon unreachable, 10 state dir/socket in use, 11 verify found problems/corruption;
run: the container's exit code, or 125 when sandboxd failed.`;

/** The exit code for an error thrown by a command. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof DaemonUnreachable) return EXIT.DAEMON_UNREACHABLE;
  if (err instanceof RpcCallError && err.data.code === undefined) return EXIT.USAGE;
  if (err instanceof SandboxdError) {
    switch (err.kind) {
      case 'InvalidArgument':
        return EXIT.USAGE;
      case 'NotFound':
        return EXIT.NOT_FOUND;
      case 'AlreadyExists':
        return EXIT.ALREADY_EXISTS;
      case 'InvalidState':
        return EXIT.INVALID_STATE;
      case 'Conflict':
        return EXIT.CONFLICT;
      case 'Timeout':
        return EXIT.TIMEOUT;
      case 'HypervisorError':
      case 'AgentError':
        return EXIT.UNAVAILABLE;
      case 'StateDirInUse':
        return EXIT.STATE_DIR_IN_USE;
      case 'Corruption':
        return EXIT.CORRUPTION;
      case 'Internal':
        return EXIT.FAILURE;
    }
  }
  return EXIT.FAILURE;
}
