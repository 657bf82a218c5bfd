// Turns failures into JSON-RPC error objects (and back, for clients): the one mapping the API uses.
import type { z } from 'zod';
import { type ErrorCode, type ErrorKind, jsonRpcCodeOf, SandboxdError } from '../errors/index.js';

/** JSON-RPC 2.0 standard codes. */
export const RPC_PARSE_ERROR = -32700;
export const RPC_INVALID_REQUEST = -32600;
export const RPC_METHOD_NOT_FOUND = -32601;
export const RPC_INVALID_PARAMS = -32602;
export const RPC_INTERNAL_ERROR = -32603;

/**
 * The protocol errors the server answers with, as docs/api.md lists them (rendered from here, so the two
 * cannot disagree): every one carries data.code InvalidArgument, like any refused input.
 */
export const PROTOCOL_ERRORS: readonly {
  readonly code: number;
  readonly dataCode: 'InvalidArgument';
  readonly meaning: string;
}[] = [
  { code: RPC_PARSE_ERROR, dataCode: 'InvalidArgument', meaning: 'parse error: the line is not JSON' },
  {
    code: RPC_INVALID_REQUEST,
    dataCode: 'InvalidArgument',
    meaning:
      'invalid request (not a request object, empty batch, over 1 MiB); `data.field` names what is wrong',
  },
  {
    code: RPC_METHOD_NOT_FOUND,
    dataCode: 'InvalidArgument',
    meaning: 'method not found; `data.field` is `method`',
  },
  {
    code: RPC_INVALID_PARAMS,
    dataCode: 'InvalidArgument',
    meaning: 'invalid params; `data.field` names the parameter (dotted path); a missing one `is required`',
  },
];

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

/** Whether `path` leads to a member `input` does not have (a missing field, not a wrong one). */
function isAbsent(input: unknown, path: readonly PropertyKey[]): boolean {
  let here = input;
  for (const key of path) {
    if (here === null || typeof here !== 'object' || !Object.hasOwn(here, key)) return true;
    here = (here as Record<PropertyKey, unknown>)[key];
  }
  return here === undefined;
}

/** Kinds of zod issue a missing member raises (a type, a union of types, a literal). */
const ABSENT_ISSUES = new Set(['invalid_type', 'invalid_union', 'invalid_value']);

/**
 * Invalid params from a zod failure over `input`: names the first bad field (dotted path under params);
 * a required field that is absent reads "is required", whatever message its schema gives a wrong value.
 */
export function invalidParamsError(error: z.ZodError, input: unknown): RpcErrorObject {
  const issue = error.issues[0];
  const field = issue && issue.path.length > 0 ? issue.path.map(String).join('.') : 'params';
  let message = issue?.message ?? 'invalid params';
  if (issue?.code === 'unrecognized_keys') message = `unknown field(s) ${issue.keys.join(', ')}`;
  if (issue && issue.path.length > 0 && ABSENT_ISSUES.has(issue.code) && isAbsent(input, issue.path)) {
    message = 'is required';
  }
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
