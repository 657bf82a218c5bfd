// What every group of sandboxctl's commands is given: the program, its global options, the API client
// (connected on first use) and a one-call action maker; and the argument parsers they share.
import { type Command, InvalidArgumentError } from 'commander';
import type { ApiClient } from '../api/index.js';
import type { GlobalOptions } from './events.js';

export interface CliContext {
  readonly program: Command;
  globals(): GlobalOptions;
  api(): Promise<ApiClient>;
  /** An action that calls one method and shows its result. */
  call(
    method: string,
    params: (...args: never[]) => unknown,
    render?: (v: never) => string,
  ): (...args: unknown[]) => Promise<void>;
}

export const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer`);
  return n;
};
export const collect = (v: string, prev: string[] = []) => [...prev, v];
