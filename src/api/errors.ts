// Turns failures into JSON-RPC error objects (and back, for clients): the one mapping the API uses.
import type { z } from 'zod';
import { type ErrorCode, type ErrorKind, jsonRpcCodeOf, SandboxdError } from '../errors/index.js';

/** JSON-RPC 2.0 standard codes. */
export const RPC_PARSE_ERROR = -32700;
export const RPC_INVALID_REQUEST = -32600;
export const RPC_METHOD_NOT_FOUND = -32601;
export const RPC_INVALID_PARAMS = -32602;
export const RPC_INTERNAL_ERROR = -32603;

export interface RpcErrorObject {
  readonly code: number;
  readonly message: string;
  readonly data?: { readonly code: string; readonly [key: string]: unknown };
}

/** Maps a thrown error: SandboxdError → its stable number and `data.code` = kind; anything else → Internal. */
export function toRpcError(err: unknown): RpcErrorObject {
  if (err instanceof SandboxdError) {
    return {
      code: jsonRpcCodeOf[err.kind],
      message: err.message,
      data: { ...toPlain(err.details), code: err.kind },
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: jsonRpcCodeOf.Internal, message: `internal: ${message}`, data: { code: 'Internal' } };
}

/** Invalid params from a zod failure: names the first bad field (dotted path under params). */
export function invalidParamsError(error: z.ZodError): RpcErrorObject {
  const issue = error.issues[0];
  const field = issue && issue.path.length > 0 ? issue.path.map(String).join('.') : 'params';
  let message = issue?.message ?? 'invalid params';
  if (issue?.code === 'unrecognized_keys') message = `unknown field(s) ${issue.keys.join(', ')}`;
  if (issue?.code === 'invalid_type' && /received undefined/.test(message)) message = 'is required';
  return {
    code: RPC_INVALID_PARAMS,
    message: `invalid params: ${field}: ${message}`,
    data: { code: 'InvalidArgument', field, issues: error.issues.length },
  };
}

function toPlain(details: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(details)) {
    if (v === undefined || typeof v === 'function') continue;
    out[k] = v;
  }
  return out;
}

const codeOfKind: Record<ErrorKind, ErrorCode> = {
  InvalidArgument: 'INVALID_ARGUMENT',
  NotFound: 'NOT_FOUND',
  AlreadyExists: 'ALREADY_EXISTS',
  InvalidState: 'FAILED_PRECONDITION',
  Conflict: 'CONFLICT',
  Timeout: 'DEADLINE_EXCEEDED',
  HypervisorError: 'UNAVAILABLE',
  AgentError: 'UNAVAILABLE',
  StateDirInUse: 'UNAVAILABLE',
  Corruption: 'DATA_LOSS',
  Internal: 'INTERNAL',
};

/**
 * An error the daemon answered with, as a client sees it: a SandboxdError of the daemon's kind,
 * plus the JSON-RPC number and data. Standard protocol errors (parse, unknown method, bad params)
 * come back as InvalidArgument.
 */
export class RpcCallError extends SandboxdError {
  readonly rpcCode: number;
  readonly data: Readonly<Record<string, unknown>>;

  constructor(method: string, error: RpcErrorObject) {
    const data = (error.data ?? {}) as Record<string, unknown>;
    const named =
      typeof data.code === 'string' && data.code in codeOfKind ? (data.code as ErrorKind) : undefined;
    const kind: ErrorKind =
      named ??
      (error.code === RPC_INTERNAL_ERROR || error.code === jsonRpcCodeOf.Internal
        ? 'Internal'
        : 'InvalidArgument');
    super(kind, codeOfKind[kind], error.message, { ...data, method, rpcCode: error.code });
    this.rpcCode = error.code;
    this.data = data;
  }
}
