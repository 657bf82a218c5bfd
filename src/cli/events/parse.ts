// Time arguments of `sandboxctl events …`: --since, --until.
import { InvalidArgument } from '../../errors/index.js';

const DURATION = /^(\d+)(ms|s|m|h|d)$/;

/** `--since`: an ISO time or a duration back from now (30s, 5m, 2h, 1d). */
export function parseSince(value: string): string {
  const m = DURATION.exec(value);
  if (m) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
    return new Date(Date.now() - Number(m[1]) * unit).toISOString();
  }
  const t = Date.parse(value);
  if (Number.isNaN(t))
    throw new InvalidArgument('since', `${JSON.stringify(value)} is neither a time nor a duration`);
  return new Date(t).toISOString();
}

/** `--until`: `seq:N` or a bare N (global seq), `version:N` / `vN` (stream version), or an ISO time. */
export function parseUntil(value: string): { seq: number } | { version: number } | { time: number } {
  let m = /^(?:seq:)?(\d+)$/.exec(value);
  if (m) return { seq: Number(m[1]) };
  m = /^(?:version:|v)(\d+)$/.exec(value);
  if (m) return { version: Number(m[1]) };
  const t = Date.parse(value);
  if (!Number.isNaN(t)) return { time: t };
  throw new InvalidArgument(
    'until',
    `${JSON.stringify(value)}: expected SEQ, seq:N, version:N, vN or an ISO time`,
  );
}

/** `--older-than`: a duration (30s, 5m, 250ms) in ms. */
export function parseDuration(value: string, field: string): number {
  const m = DURATION.exec(value);
  if (!m)
    throw new InvalidArgument(field, `${JSON.stringify(value)} is not a duration (250ms, 30s, 5m, 2h, 1d)`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms'];
}
