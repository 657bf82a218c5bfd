// API methods — Execs of a container: run, wait, signal, output, stdin.
import type { Observable, Subscription } from 'rxjs';
import { z } from 'zod';
import { withDeadline } from '../../timing/index.js';
import { followOutput, readOutput } from '../output.js';
import { base64Schema, idSchema, isoTimeSchema, processSchema, signalSchema } from '../schemas.js';
import { execRef, type MethodSpec, method, timeoutMsSchema } from './spec.js';

const b64 = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');

/** Collects an output stream until it completes or `ms` passes. */
function collect(source: Observable<Uint8Array>, ms: number): Promise<{ data: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let sub: Subscription | undefined;
    const timer = setTimeout(() => {
      sub?.unsubscribe();
      resolve({ data: Buffer.concat(chunks), complete: false });
    }, ms);
    sub = source.subscribe({
      next: (c) => chunks.push(Buffer.from(c)),
      error: (err) => {
        clearTimeout(timer);
        reject(err);
      },
      complete: () => {
        clearTimeout(timer);
        resolve({ data: Buffer.concat(chunks), complete: true });
      },
    });
  });
}

export const execMethods = [
  method({
    name: 'exec.start',
    summary:
      'Runs an extra process in a running container: a new exec with process, or (no process) the one exec.create registered.',
    when: 'container running; with process: execId unused in the container; without: the exec is created (registered).',
    params: z.strictObject({
      sandboxId: idSchema,
      containerId: idSchema,
      execId: idSchema,
      process: processSchema.optional(),
    }),
    result: 'ExecView (state running, pid)',
    handler: (p, { runtime }) => runtime.startExec(p.sandboxId, p.containerId, p.execId, p.process),
  }),
  method({
    name: 'exec.create',
    summary:
      "Registers an extra process without starting it (containerd's Exec before its Start); exec.start starts it.",
    when: 'container running; execId unused in the container (a deleted exec id may be used again).',
    params: z.strictObject({
      sandboxId: idSchema,
      containerId: idSchema,
      execId: idSchema,
      process: processSchema,
    }),
    result: 'ExecView (state created)',
    handler: (p, { runtime }) => runtime.createExec(p.sandboxId, p.containerId, p.execId, p.process),
  }),
  method({
    name: 'exec.delete',
    summary:
      'Forgets an exec that is not running (exited, failed, or never started); its id may be used again.',
    when: 'exec created, exited or failed.',
    params: z.strictObject({ sandboxId: idSchema, containerId: idSchema, execId: idSchema }),
    result: '{ id, deleted: true, exit?: ExitStatus }',
    handler: async (p, { runtime }) => {
      const { exit } = runtime.getExec(p.sandboxId, p.containerId, p.execId);
      await runtime.deleteExec(p.sandboxId, p.containerId, p.execId);
      return { id: p.execId, deleted: true, ...(exit ? { exit } : {}) };
    },
  }),
  method({
    name: 'exec.state',
    summary: "An exec's current view.",
    params: z.strictObject({ sandboxId: idSchema, containerId: idSchema, execId: idSchema }),
    result: 'ExecView',
    handler: (p, { runtime }) => runtime.getExec(p.sandboxId, p.containerId, p.execId),
  }),
  method({
    name: 'exec.wait',
    summary: "Resolves with the exec's exit status once it ended (timeoutMs: Timeout error instead).",
    params: z.strictObject({
      sandboxId: idSchema,
      containerId: idSchema,
      execId: idSchema,
      timeoutMs: timeoutMsSchema.optional(),
    }),
    result: 'ExitStatus',
    handler: (p, { runtime }) =>
      withDeadline(
        runtime.waitExec(p.sandboxId, p.containerId, p.execId),
        p.timeoutMs,
        `exec.wait ${p.sandboxId}/${p.containerId}/${p.execId}`,
      ),
  }),
  method({
    name: 'exec.kill',
    summary: 'Sends a signal to an exec.',
    when: 'running.',
    params: z.strictObject({
      sandboxId: idSchema,
      containerId: idSchema,
      execId: idSchema,
      signal: signalSchema.optional(),
    }),
    result: '{ signalled: true }',
    handler: async (p, { runtime }) => {
      await runtime.killExec(p.sandboxId, p.containerId, p.execId, p.signal ?? 'SIGTERM');
      return { signalled: true };
    },
  }),
  method({
    name: 'exec.resize',
    summary: "Resizes an exec's terminal.",
    when: 'running, started with terminal: true.',
    params: z.strictObject({
      ...execRef,
      rows: z.number().int().min(1).max(10000),
      cols: z.number().int().min(1).max(10000),
    }),
    result: '{ resized: true }',
    handler: async (p, { runtime }) => {
      await runtime.resizeExec(p.sandboxId, p.containerId, p.execId, p.rows, p.cols);
      return { resized: true };
    },
  }),
  method({
    name: 'exec.output',
    summary:
      "Output of a process (execId '' = the container's init), from its host log (CRI format, kept until the container or exec is deleted; see README \"Logs\"). Without follow: what the log holds (waiting up to timeoutMs, default 1000, for a running process to end); `complete` says whether the process's output is all there, `next` is the log offset to go on from. since (RFC3339) and tail (last N lines) filter; timestamps gives `records` [{ time, stream, data (base64), partial?, marker? }] instead of one blob per stream; a marker record says how many bytes the guest dropped while nobody read. With follow: a subscription from `offset` (default the start; a previous `next` to resume); `exec.output` notifications { subscription, stream, data (base64), time, next } then one `exec.outputEnd` { subscription, stream, error? } per stream once the log ends.",
    params: z.strictObject({
      ...execRef,
      stream: z.enum(['stdout', 'stderr', 'both']).optional(),
      follow: z.boolean().optional(),
      timeoutMs: timeoutMsSchema.optional(),
      since: isoTimeSchema.optional(),
      tail: z.number().int().min(0).optional(),
      offset: z.number().int().min(0).optional(),
      timestamps: z.boolean().optional(),
    }),
    result:
      'without follow: { stdout?: base64, stderr?: base64 (or records with timestamps), complete, next, skipped? }; with follow: { subscription }',
    handler: async (p, { runtime, connection, logs }) => {
      const which = p.stream ?? 'both';
      const streams: ('stdout' | 'stderr')[] = which === 'both' ? ['stdout', 'stderr'] : [which];
      // Asking for a process that does not exist fails now, not in the feed.
      if (p.execId === '') runtime.getContainer(p.sandboxId, p.containerId);
      else runtime.getExec(p.sandboxId, p.containerId, p.execId);
      if (logs) {
        const params = { ...p, streams, timeoutMs: p.timeoutMs ?? 1000 };
        if (!p.follow) return readOutput(logs, params);
        return { subscription: connection.subscribe(followOutput(logs, params)) };
      }
      if (!p.follow) {
        const parts = await Promise.all(
          streams.map((s) =>
            collect(runtime.output(p.sandboxId, p.containerId, p.execId, s), p.timeoutMs ?? 1000),
          ),
        );
        const out: Record<string, unknown> = { complete: parts.every((x) => x.complete) };
        streams.forEach((s, i) => {
          out[s] = parts[i]!.data.toString('base64');
        });
        return out;
      }
      const subscription = connection.subscribe({
        kind: 'output',
        start: (emit, end) => {
          let open = streams.length;
          const subs = streams.map((s) =>
            runtime.output(p.sandboxId, p.containerId, p.execId, s).subscribe({
              next: (chunk) => {
                emit('exec.output', { stream: s, data: b64(chunk) });
              },
              error: (err: unknown) => {
                open--;
                const message = err instanceof Error ? err.message : String(err);
                if (open === 0) end('exec.outputEnd', { stream: s, error: message });
                else emit('exec.outputEnd', { stream: s, error: message });
              },
              complete: () => {
                open--;
                if (open === 0) end('exec.outputEnd', { stream: s });
                else emit('exec.outputEnd', { stream: s });
              },
            }),
          );
          return () => {
            for (const sub of subs) sub.unsubscribe();
          };
        },
      });
      return { subscription };
    },
  }),
  method({
    name: 'exec.writeStdin',
    summary: "Writes bytes (base64) to a process's stdin (execId '' = init).",
    when: 'running.',
    params: z.strictObject({ ...execRef, data: base64Schema }),
    result: '{ written: number }',
    handler: async (p, { runtime }) => ({
      written: await runtime.writeStdin(p.sandboxId, p.containerId, p.execId, Buffer.from(p.data, 'base64')),
    }),
  }),
  method({
    name: 'exec.closeStdin',
    summary: "Closes a process's stdin (EOF).",
    when: 'running.',
    params: z.strictObject(execRef),
    result: '{ closed: true }',
    handler: async (p, { runtime }) => {
      await runtime.closeStdin(p.sandboxId, p.containerId, p.execId);
      return { closed: true };
    },
  }),
] as const satisfies readonly MethodSpec[];
