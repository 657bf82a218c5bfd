// exec.output served from the host logs (src/logs): a read (what the log holds, waiting up to timeoutMs for the end)
// or a follow subscription that resumes at a log offset and goes on across rotations until the process's log ends.
import type { LogRecord, OutputKeeper, OutputStream, ProcessRef } from '../logs/index.js';
import type { SubscriptionSpec } from './methods/index.js';

export interface OutputParams extends ProcessRef {
  readonly streams: readonly OutputStream[];
  readonly since?: string | undefined;
  readonly tail?: number | undefined;
  /** Log offset to start at (a previous answer's `next`). */
  readonly offset?: number | undefined;
  /** One record each, with its time, instead of the bytes of each stream. */
  readonly timestamps?: boolean | undefined;
  readonly timeoutMs: number;
}

const b64 = (b: Buffer) => b.toString('base64');
const bytesOf = (r: LogRecord) => (r.partial ? r.content : Buffer.concat([r.content, Buffer.from('\n')]));

function recordJson(r: LogRecord) {
  return {
    time: r.time,
    stream: r.stream,
    data: b64(bytesOf(r)),
    ...(r.partial ? { partial: true } : {}),
    ...(r.marker ? { marker: true } : {}),
  };
}

/** What the log holds now (from `offset`, since, tail); waits up to timeoutMs for a running process's end. */
export async function readOutput(logs: OutputKeeper, p: OutputParams): Promise<Record<string, unknown>> {
  const deadline = Date.now() + p.timeoutMs;
  const options = {
    streams: p.streams,
    ...(p.offset !== undefined ? { from: p.offset } : {}),
    ...(p.since !== undefined ? { since: p.since } : {}),
    ...(p.tail !== undefined ? { tail: p.tail } : {}),
  };
  let result = await logs.read(p, options);
  while (!result.done && Date.now() < deadline) {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), Math.max(0, deadline - Date.now()));
    await logs.waitForMore(p, result.next, ac.signal);
    clearTimeout(timer);
    result = await logs.read(p, options);
  }
  const out: Record<string, unknown> = { complete: result.done, next: result.next };
  if (result.skipped > 0) out.skipped = result.skipped;
  if (p.timestamps) out.records = result.records.map(recordJson);
  else {
    for (const s of p.streams) {
      out[s] = b64(Buffer.concat(result.records.filter((r) => r.stream === s).map(bytesOf)));
    }
  }
  return out;
}

/**
 * The follow feed: `exec.output` { stream, data, time, next } per run of records of one stream (per record with
 * timestamps, adding partial / marker), then `exec.outputEnd` { stream } for each stream once the log ended.
 */
export function followOutput(logs: OutputKeeper, p: OutputParams): SubscriptionSpec {
  return {
    kind: 'output',
    start: (emit, end) => {
      const ac = new AbortController();
      let next = p.offset ?? 0;
      const finish = (error?: string) => {
        p.streams.forEach((stream, i) => {
          const params = { stream, ...(error ? { error } : {}) };
          if (i === p.streams.length - 1) end('exec.outputEnd', params);
          else emit('exec.outputEnd', params);
        });
      };
      const send = (records: LogRecord[]): boolean => {
        let i = 0;
        while (i < records.length) {
          let j = i + 1;
          if (!p.timestamps) while (j < records.length && records[j]!.stream === records[i]!.stream) j++;
          const run = records.slice(i, j);
          const first = run[0]!;
          const params: Record<string, unknown> = {
            stream: first.stream,
            data: b64(Buffer.concat(run.map(bytesOf))),
            time: first.time,
            next: run.at(-1)!.end,
          };
          if (p.timestamps && first.partial) params.partial = true;
          if (first.marker) params.marker = true;
          if (!emit('exec.output', params)) return false;
          i = j;
        }
        return true;
      };
      void (async () => {
        try {
          let first = true;
          for (;;) {
            if (ac.signal.aborted) return;
            const result = await logs.read(p, {
              streams: p.streams,
              from: next,
              maxBytes: 1024 * 1024,
              ...(first && p.since !== undefined ? { since: p.since } : {}),
              ...(first && p.tail !== undefined ? { tail: p.tail, maxBytes: 1024 * 1024 * 1024 } : {}),
            });
            first = false;
            if (ac.signal.aborted || !send(result.records)) return;
            const grew = result.next > next;
            next = result.next;
            if (result.done) {
              finish();
              return;
            }
            if (!grew) await logs.waitForMore(p, next, ac.signal);
          }
        } catch (err) {
          if (!ac.signal.aborted) finish(err instanceof Error ? err.message : String(err));
        }
      })();
      return () => ac.abort();
    },
  };
}
