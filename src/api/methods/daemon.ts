// API methods: The daemon itself: facts and metrics.
import { z } from 'zod';
import type { Runtime } from '../../actors/index.js';
import { renderMetrics } from '../metrics.js';
import { type MethodSpec, method } from './spec.js';

function countBy<T>(items: readonly T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

function safeContainers(runtime: Runtime, sandboxId: string) {
  try {
    return runtime.listContainers(sandboxId);
  } catch {
    return [];
  }
}

export const daemonMethods = [
  method({
    name: 'daemon.info',
    summary:
      'Version, hypervisor mode (kvm/tcg), counts of sandboxes and containers by state, last event seq.',
    params: z.strictObject({}).optional(),
    result:
      '{ version, pid, startedAt, stateDir, socket, templates: on|off, hypervisor: { mode }, sandboxes: { total, byState }, containers: { total, byState }, events: { lastSeq } }',
    handler: async (_p, { runtime, events, facts, accel }) => {
      const sandboxes = runtime.listSandboxes();
      const containers = sandboxes.flatMap((s) => safeContainers(runtime, s.id));
      const mode = runtime.accel ?? (accel ? await accel().catch(() => undefined) : undefined);
      return {
        ...facts,
        hypervisor: { mode: mode ?? 'unknown' },
        sandboxes: { total: sandboxes.length, byState: countBy(sandboxes, (s) => s.state) },
        containers: { total: containers.length, byState: countBy(containers, (c) => c.state) },
        events: { lastSeq: events.lastSeq() },
      };
    },
  }),

  method({
    name: 'daemon.metrics',
    summary:
      'Prometheus text: sandboxes and containers by state, transition durations (histogram) and stuck intents, the event log writer (appends, fsyncs), API requests by method, each VM’s host CPU and memory. Also served over HTTP with sandboxd --metrics-address.',
    params: z.strictObject({}).optional(),
    result: '{ metrics: string }',
    handler: async (_p, ctx) => ({ metrics: await renderMetrics(ctx) }),
  }),
] as const satisfies readonly MethodSpec[];
