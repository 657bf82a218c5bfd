// Errors of sandboxd-runc, worded as runc words them where its clients parse the text (podman looks for
// "does not exist" in `state`'s stderr, containerd's go-runc for "container not running" and the like).
import { DaemonUnreachable, RpcCallError } from '../api/index.js';

/** A refusal with runc's wording; `code` is stable for tests and logs. */
export class RuncError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'RuncError';
    this.code = code;
  }
}

export const notExist = () => new RuncError('NotFound', 'container does not exist');
export const exists = (id: string) => new RuncError('AlreadyExists', `container with id exists: ${id}`);
export const badArgument = (field: string, message: string) =>
  new RuncError('InvalidArgument', `invalid argument ${field}: ${message}`);

/** The message a user should read for `err`, whatever threw it. */
export function describe(err: unknown, socket: string): string {
  if (err instanceof DaemonUnreachable) {
    return `sandboxd is not running (no answer on ${socket}): start it, or point SANDBOXD_SOCKET / --sandboxd-socket at it`;
  }
  if (err instanceof RpcCallError && err.kind === 'NotFound') return 'container does not exist';
  return err instanceof Error ? err.message : String(err);
}

/** Whether `err` is the daemon's NotFound. */
export const isNotFound = (err: unknown) => err instanceof RpcCallError && err.kind === 'NotFound';
