// Signals as runc's kill takes them: KILL, SIGKILL or 9.
import { constants } from 'node:os';
import { RuncError } from './errors.js';

const byName = constants.signals as unknown as Record<string, number>;

export function parseSignal(raw: string): number {
  if (/^\d+$/.test(raw)) {
    const n = Number(raw);
    if (n >= 1 && n <= 64) return n;
  } else {
    const name = raw.toUpperCase().startsWith('SIG') ? raw.toUpperCase() : `SIG${raw.toUpperCase()}`;
    const n = byName[name];
    if (n !== undefined) return n;
  }
  throw new RuncError('InvalidArgument', `unknown signal "${raw}"`);
}
