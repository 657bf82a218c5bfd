// How sandboxctl shows results: JSON with --json, readable tables otherwise.
import Table from 'cli-table3';

export interface OutputOptions {
  readonly json: boolean;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function table(head: string[], rows: unknown[][]): string {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r.map((c) => (c === undefined || c === null ? '' : String(c))));
  return t.toString();
}

/** A value as key/value rows (objects nested one level as JSON). */
export function keyValues(value: unknown): string {
  if (typeof value !== 'object' || value === null) return String(value);
  const t = new Table({ style: { head: [], border: [] } });
  for (const [k, v] of Object.entries(value)) {
    t.push({ [k]: typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v) });
  }
  return t.toString();
}

/** Prints `value` as JSON or through `render` (default: key/value table). */
export function show<T>(opts: OutputOptions, value: T, render: (v: T) => string = keyValues): void {
  if (opts.json) {
    printJson(value);
    return;
  }
  process.stdout.write(`${render(value)}\n`);
}

export function shortTime(iso: string | undefined): string {
  if (!iso) return '';
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}
