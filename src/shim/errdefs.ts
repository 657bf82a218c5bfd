// sandboxd's error kinds as containerd's errdefs reads them off a ttrpc status (errdefs.FromGRPC).
import { DaemonUnreachable } from '../api/index.js';
import { SandboxdError } from '../errors/index.js';
import { Code, TtrpcError } from '../ttrpc/index.js';

const BY_KIND: Record<string, number> = {
  NotFound: Code.NotFound,
  AlreadyExists: Code.AlreadyExists,
  InvalidArgument: Code.InvalidArgument,
  InvalidState: Code.FailedPrecondition,
  Conflict: Code.FailedPrecondition,
  Timeout: Code.DeadlineExceeded,
  StateDirInUse: Code.Unavailable,
};

/** The status a Task call answers for `err`: typed errors keep their meaning, the rest is Unknown. */
export function toStatus(err: unknown): { code: number; message: string } {
  if (err instanceof TtrpcError) return { code: err.code, message: err.message };
  if (err instanceof DaemonUnreachable) return { code: Code.Unavailable, message: err.message };
  if (err instanceof SandboxdError) return { code: BY_KIND[err.kind] ?? Code.Unknown, message: err.message };
  return { code: Code.Unknown, message: err instanceof Error ? err.message : String(err) };
}

export const notFound = (what: string) => new TtrpcError(Code.NotFound, `${what}: not found`);
export const invalid = (message: string) => new TtrpcError(Code.InvalidArgument, message);
export const precondition = (message: string) => new TtrpcError(Code.FailedPrecondition, message);
export const notImplemented = (what: string) =>
  new TtrpcError(Code.Unimplemented, `${what}: not implemented`);
