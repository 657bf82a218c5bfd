// gRPC status codes as ttrpc carries them in Response.status, and the error that holds one.

export const Code = {
  OK: 0,
  Canceled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Aborted: 10,
  OutOfRange: 11,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  DataLoss: 15,
  Unauthenticated: 16,
} as const;

export type CodeName = keyof typeof Code;
export type CodeNumber = (typeof Code)[CodeName];

const names = new Map<number, CodeName>(Object.entries(Code).map(([k, v]) => [v, k as CodeName]));

export function codeName(code: number): CodeName | 'Unknown' {
  return names.get(code) ?? 'Unknown';
}

/** A call that ended with a non-OK status, on either side: handlers throw it, clients receive it. */
export class TtrpcError extends Error {
  readonly codeName: CodeName | 'Unknown';
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = 'TtrpcError';
    this.codeName = codeName(code);
  }
}
