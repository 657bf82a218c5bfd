// Typed errors with stable codes: the one place where failures get the names the API, gRPC and the CLI show.

/** Stable, transport-neutral error codes (gRPC-style). Never rename one: clients match on them. */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'CONFLICT'
  | 'UNAVAILABLE'
  | 'DEADLINE_EXCEEDED'
  | 'DATA_LOSS'
  | 'INTERNAL';

/** The names clients see as JSON-RPC `error.data.code`. */
export type ErrorKind =
  | 'InvalidArgument'
  | 'NotFound'
  | 'AlreadyExists'
  | 'InvalidState'
  | 'Conflict'
  | 'Timeout'
  | 'HypervisorError'
  | 'AgentError'
  | 'StateDirInUse'
  | 'Corruption'
  | 'Internal';

export interface ErrorDetails {
  readonly [key: string]: unknown;
}

/** Base of every error sandboxd raises on purpose. `kind` and `code` are stable; `message` is for people. */
export class SandboxdError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly details: ErrorDetails;

  constructor(
    kind: ErrorKind,
    code: ErrorCode,
    message: string,
    details: ErrorDetails = {},
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = kind;
    this.kind = kind;
    this.code = code;
    this.details = details;
  }
}

/** Bad input; `field` names the offending parameter (dotted path). */
export class InvalidArgument extends SandboxdError {
  constructor(
    readonly field: string,
    message: string,
    details: ErrorDetails = {},
  ) {
    super('InvalidArgument', 'INVALID_ARGUMENT', `${field}: ${message}`, { field, ...details });
  }
}

export class NotFound extends SandboxdError {
  constructor(entity: string, id: string, details: ErrorDetails = {}) {
    super('NotFound', 'NOT_FOUND', `${entity} ${JSON.stringify(id)} not found`, { entity, id, ...details });
  }
}

export class AlreadyExists extends SandboxdError {
  constructor(entity: string, id: string, details: ErrorDetails = {}) {
    super('AlreadyExists', 'ALREADY_EXISTS', `${entity} ${JSON.stringify(id)} already exists`, {
      entity,
      id,
      ...details,
    });
  }
}

/** A command that the entity's current state does not allow. Nothing was written. */
export class InvalidState extends SandboxdError {
  constructor(entity: string, id: string, state: string, command: string) {
    super(
      'InvalidState',
      'FAILED_PRECONDITION',
      `${entity} ${JSON.stringify(id)} is ${state}: ${command} is not allowed`,
      { entity, id, state, command },
    );
  }
}

/** Optimistic concurrency: the stream moved on since the caller read it. */
export class ConcurrencyConflict extends SandboxdError {
  constructor(
    readonly stream: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super('Conflict', 'CONFLICT', `stream ${stream}: expected version ${expected}, actual ${actual}`, {
      stream,
      expected,
      actual,
    });
  }
}

/** An operation outlived its deadline; `step` names what was waited for. */
export class Timeout extends SandboxdError {
  constructor(step: string, ms: number, details: ErrorDetails = {}) {
    super('Timeout', 'DEADLINE_EXCEEDED', `${step} timed out after ${ms} ms`, { step, ms, ...details });
  }
}

export class HypervisorError extends SandboxdError {
  constructor(step: string, message: string, details: ErrorDetails = {}, cause?: unknown) {
    super('HypervisorError', 'UNAVAILABLE', `${step}: ${message}`, { step, ...details }, cause);
  }
}

export class AgentError extends SandboxdError {
  constructor(step: string, message: string, details: ErrorDetails = {}, cause?: unknown) {
    super('AgentError', 'UNAVAILABLE', `${step}: ${message}`, { step, ...details }, cause);
  }
}

/** Another sandboxd holds the state dir (LevelDB's lock). */
export class StateDirInUse extends SandboxdError {
  constructor(dir: string, cause?: unknown) {
    super('StateDirInUse', 'UNAVAILABLE', `state dir ${dir} is in use by another sandboxd`, { dir }, cause);
  }
}

/** Stored data failed its checksum or could not be decoded. */
export class Corruption extends SandboxdError {
  constructor(where: string, message: string, details: ErrorDetails = {}, cause?: unknown) {
    super('Corruption', 'DATA_LOSS', `${where}: ${message}`, { where, ...details }, cause);
  }
}

export class Internal extends SandboxdError {
  constructor(step: string, message: string, details: ErrorDetails = {}, cause?: unknown) {
    super('Internal', 'INTERNAL', `${step}: ${message}`, { step, ...details }, cause);
  }
}

/** JSON-RPC application error numbers (−32000..−32099), one per kind; stable. */
export const jsonRpcCodeOf: Readonly<Record<ErrorKind, number>> = {
  InvalidArgument: -32602,
  NotFound: -32001,
  AlreadyExists: -32002,
  InvalidState: -32003,
  Conflict: -32004,
  Timeout: -32005,
  HypervisorError: -32006,
  AgentError: -32007,
  StateDirInUse: -32008,
  Corruption: -32009,
  Internal: -32000,
};

/** gRPC status numbers for each code (used by the guest agent and host client). */
export const grpcStatusOf: Readonly<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  FAILED_PRECONDITION: 9,
  CONFLICT: 10,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
};

/** Wraps anything thrown into a SandboxdError, keeping the original as `cause`. */
export function asSandboxdError(err: unknown, step: string): SandboxdError {
  if (err instanceof SandboxdError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new Internal(step, message, {}, err);
}

export function assertNever(value: never): never {
  throw new Internal('assertNever', `unexpected value ${JSON.stringify(value)}`);
}
