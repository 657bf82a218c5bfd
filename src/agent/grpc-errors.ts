// How a failed agent RPC becomes one of sandboxd's typed errors: the agent puts the kind and its details in the
// trailing metadata, so NotFound / InvalidState / … come back as the same classes the guest threw.
import type { ServiceError } from '@grpc/grpc-js';
import {
  AgentError,
  AlreadyExists,
  InvalidArgument,
  InvalidState,
  NotFound,
  type SandboxdError,
  Timeout,
} from '../errors/index.js';
import { ERROR_DETAILS_KEY, ERROR_KIND_KEY } from './wire.js';

/** The gRPC status codes the client acts on. */
export const GRPC_STATUS = { CANCELLED: 1, DEADLINE_EXCEEDED: 4, INTERNAL: 13, UNAVAILABLE: 14 } as const;

/** The typed error for a failed RPC `rpc` (a call with `deadlineMs`, 0 for streams) to `sandboxId`'s agent. */
export function agentErrorOf(
  err: ServiceError | null,
  rpc: string,
  sandboxId: string,
  deadlineMs: number,
): SandboxdError {
  const step = `agent ${rpc}`;
  if (!err) return new AgentError(step, 'empty answer', { sandboxId });
  const kind = err.metadata?.get(ERROR_KIND_KEY)[0];
  let details: Record<string, unknown> = {};
  const rawDetails = err.metadata?.get(ERROR_DETAILS_KEY)[0];
  if (typeof rawDetails === 'string') {
    try {
      details = JSON.parse(rawDetails) as Record<string, unknown>;
    } catch {
      details = {};
    }
  }
  const message = err.details || err.message;
  const str = (key: string) => (typeof details[key] === 'string' ? (details[key] as string) : '?');
  switch (kind) {
    case 'NotFound':
      return new NotFound(str('entity'), str('id'), { sandboxId, rpc });
    case 'AlreadyExists':
      return new AlreadyExists(str('entity'), str('id'), { sandboxId, rpc });
    case 'InvalidState':
      return new InvalidState(str('entity'), str('id'), str('state'), str('command'));
    case 'InvalidArgument': {
      const field = str('field');
      const prefix = `${field}: `;
      return new InvalidArgument(field, message.startsWith(prefix) ? message.slice(prefix.length) : message, {
        sandboxId,
        rpc,
      });
    }
    case 'Timeout':
      return new Timeout(`${step}: ${str('step')}`, typeof details.ms === 'number' ? details.ms : 0, {
        sandboxId,
      });
    default:
      break;
  }
  if (kind === undefined && err.code === GRPC_STATUS.DEADLINE_EXCEEDED) {
    return new Timeout(step, deadlineMs, { sandboxId });
  }
  return new AgentError(
    step,
    message,
    { sandboxId, grpcCode: err.code, ...(kind ? { agentKind: kind } : {}) },
    err,
  );
}
