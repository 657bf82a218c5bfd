// `sandboxctl container logs` and `exec output`: a process's output from its host log (docker logs' flags: --since,
// --tail, -t, -f), as JSON with --json. Follow survives a daemon restart: it reconnects and resumes at the last offset.
import type { Command } from 'commander';
import { type ApiClient, connectApi, type Notification } from '../api/index.js';
import { sleep } from '../timing/index.js';
import type { ProcessRef } from './attach.js';
import { printJson } from './output.js';

export interface LogsOptions {
  readonly follow?: boolean;
  readonly since?: string;
  readonly tail?: string;
  readonly timestamps?: boolean;
}

interface Record {
  time: string;
  stream: 'stdout' | 'stderr';
  data: string;
  partial?: boolean;
  marker?: boolean;
}

/** The docker-style log flags on a command. */
export function withLogFlags(command: Command): Command {
  return command
    .option('-f, --follow', 'follow until the process ends (across log rotation and daemon restarts)')
    .option('--since <time>', 'only output since an RFC3339 time or a duration ago (10s, 5m, 2h)')
    .option('-n, --tail <n>', 'only the last N lines')
    .option('-t, --timestamps', 'prefix each line with its RFC3339Nano time');
}

/** RFC3339 as given; a duration (s, m, h) as the time that long ago. Throws a usage error naming --since. */
export function sinceTime(text: string, now = Date.now()): string {
  const d = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (d) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[d[2] as 'ms' | 's' | 'm' | 'h'];
    return new Date(now - Number(d[1]) * unit).toISOString();
  }
  if (!/^\d{4}-\d\d-\d\d(T[\d:.]+(Z|[+-]\d\d:?\d\d)?)?$/.test(text) || Number.isNaN(Date.parse(text))) {
    throw new Error(`--since: ${JSON.stringify(text)} is neither an RFC3339 time nor a duration like 10m`);
  }
  return text;
}

function tailCount(text: string | undefined): number | undefined {
  if (text === undefined || text === 'all') return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--tail: ${JSON.stringify(text)} is not a line count`);
  return n;
}

/**
 * Prints the output; returns once it is all printed (with -f: once the process's log ended). A process still running
 * when read without -f gets a note on stderr that what was printed is partial (nothing on stdout changes).
 */
export async function printLogs(
  connect: () => Promise<ApiClient>,
  socket: string,
  ref: ProcessRef,
  o: LogsOptions,
  json: boolean,
): Promise<void> {
  const tail = tailCount(o.tail);
  const filters = {
    ...(o.since !== undefined ? { since: sinceTime(o.since) } : {}),
    ...(tail !== undefined ? { tail } : {}),
  };
  if (!o.follow) {
    const client = await connect();
    const r = await client.call<{ complete: boolean; next: number; records: Record[] }>('exec.output', {
      ...ref,
      ...filters,
      timestamps: true,
    });
    if (json) {
      printJson({ complete: r.complete, next: r.next, records: r.records.map(jsonRecord) });
    } else {
      for (const rec of r.records) writeRecord(rec, Boolean(o.timestamps));
    }
    if (!r.complete) {
      process.stderr.write(
        'sandboxctl: the process is still running (or its output is still arriving): this output is partial; -f follows it\n',
      );
    }
    return;
  }
  await follow(connect, socket, ref, filters, Boolean(o.timestamps), json);
}

const jsonRecord = (r: Record) => ({
  time: r.time,
  stream: r.stream,
  text: Buffer.from(r.data, 'base64').toString('utf8'),
  ...(r.partial ? { partial: true } : {}),
  ...(r.marker ? { marker: true } : {}),
});

function writeRecord(r: Record, timestamps: boolean, lineStart = { stdout: true, stderr: true }): void {
  const out = r.stream === 'stderr' ? process.stderr : process.stdout;
  const data = Buffer.from(r.data, 'base64');
  if (timestamps && lineStart[r.stream]) out.write(`${r.time} `);
  out.write(data);
  lineStart[r.stream] = !r.partial;
}

/** Follows from offset 0 (or the filters' start); on a dropped connection reconnects and resumes at `next`. */
async function follow(
  connect: () => Promise<ApiClient>,
  socket: string,
  ref: ProcessRef,
  filters: { since?: string; tail?: number },
  timestamps: boolean,
  json: boolean,
): Promise<void> {
  let next: number | undefined;
  const lineStart = { stdout: true, stderr: true };
  let client = await connect();
  for (;;) {
    const outcome = await new Promise<'ended' | 'dropped'>((resolve, reject) => {
      let subscription: string | undefined;
      let ended = 0;
      const early: Notification[] = [];
      const handle = (n: Notification) => {
        if (n.params.subscription !== subscription) return;
        if (n.method === 'exec.output') {
          const rec = n.params as unknown as Record & { next: number };
          next = rec.next;
          if (json) process.stdout.write(`${JSON.stringify({ ...jsonRecord(rec), next: rec.next })}\n`);
          else writeRecord(rec, timestamps, lineStart);
        } else if (n.method === 'exec.outputEnd') {
          if (typeof n.params.error === 'string') process.stderr.write(`sandboxctl: ${n.params.error}\n`);
          if (++ended === 2) resolve('ended');
        }
      };
      client.onNotification((n) => (subscription === undefined ? early.push(n) : handle(n)));
      client.onClose(() => resolve('dropped'));
      const params = {
        ...ref,
        follow: true,
        ...(timestamps || json ? { timestamps: true } : {}),
        ...(next === undefined ? filters : { offset: next }),
      };
      client.call<{ subscription: string }>('exec.output', params).then((answer) => {
        subscription = answer.subscription;
        for (const n of early.splice(0)) handle(n);
      }, reject);
    }).catch((err: unknown) => {
      // A connection that broke before the answer is a restart too; anything else is the daemon's answer.
      if ((err as { kind?: string; details?: { step?: string } }).details?.step === 'connect')
        return 'dropped';
      throw err;
    });
    if (outcome === 'ended') return;
    client.close();
    client = await reconnect(socket);
  }
}

/** Waits for the daemon to come back (a restart takes seconds: recovery runs before it listens). */
async function reconnect(socket: string): Promise<ApiClient> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      return await connectApi(socket, { connectTimeoutMs: 2000 });
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
}
