// Prometheus text exposition of the daemon: entities by state, transition durations and stuck intents, the event
// log's writer, API traffic, what VMs cost.
import type { Runtime } from '../actors/index.js';
import type { HistogramSeries } from '../explain/index.js';
import type { Accel } from '../hypervisor/index.js';
import type { StoreStats } from '../store/index.js';

/** Requests answered per method since the daemon started. */
export interface MethodTraffic {
  ok: number;
  error: number;
  /** Summed handling time, in seconds. */
  seconds: number;
}

export interface ApiTraffic {
  readonly connections: number;
  readonly inFlight: number;
  readonly requests: ReadonlyMap<string, MethodTraffic>;
}

export interface MetricsSources {
  readonly runtime: Runtime;
  readonly events: { lastSeq(): number; readonly stats?: StoreStats };
  readonly facts: { readonly version: string; readonly startedAt: string };
  readonly accel?: () => Promise<Accel>;
  readonly traffic?: () => ApiTraffic;
}

type Labels = Readonly<Record<string, string>>;

/** Label values escaped as the exposition format wants (backslash, double quote, newline). */
function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(
    ([k, v]) => `${k}="${v.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')}"`,
  );
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

class Exposition {
  private readonly lines: string[] = [];

  metric(
    name: string,
    type: 'gauge' | 'counter',
    help: string,
    samples: readonly (readonly [Labels, number])[],
  ): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) this.lines.push(`${name}${labelText(labels)} ${value}`);
  }

  /** A histogram: `_bucket` per bound (cumulative, then +Inf), `_sum` and `_count` per series. */
  histogram(name: string, help: string, bounds: readonly number[], series: readonly HistogramSeries[]): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    for (const s of series) {
      s.buckets.forEach((count, i) => {
        const le = i < bounds.length ? String(bounds[i]) : '+Inf';
        this.lines.push(`${name}_bucket${labelText({ ...s.labels, le })} ${count}`);
      });
      this.lines.push(
        `${name}_sum${labelText(s.labels)} ${s.sum}`,
        `${name}_count${labelText(s.labels)} ${s.count}`,
      );
    }
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

function countBy<T>(items: readonly T[], key: (item: T) => string): [Labels, number][] {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([state, n]) => [{ state }, n]);
}

/** Everything as Prometheus text (version 0.0.4). VM figures come from /proc: no guest is asked. */
export async function renderMetrics(sources: MetricsSources): Promise<string> {
  const { runtime, events, facts } = sources;
  const out = new Exposition();
  const mode = runtime.accel ?? (sources.accel ? await sources.accel().catch(() => undefined) : undefined);
  out.metric('sandboxd_info', 'gauge', 'The daemon: version and hypervisor mode.', [
    [{ version: facts.version, accel: mode ?? 'unknown' }, 1],
  ]);
  out.metric('sandboxd_uptime_seconds', 'gauge', 'Seconds since the daemon started.', [
    [{}, Math.max(0, (Date.now() - Date.parse(facts.startedAt)) / 1000)],
  ]);

  const sandboxes = runtime.listSandboxes();
  out.metric(
    'sandboxd_sandboxes',
    'gauge',
    'Sandboxes by state.',
    countBy(sandboxes, (s) => s.state),
  );
  const containers = sandboxes.flatMap((s) => {
    try {
      return runtime.listContainers(s.id);
    } catch {
      return [];
    }
  });
  out.metric(
    'sandboxd_containers',
    'gauge',
    'Containers by state.',
    countBy(containers, (c) => c.state),
  );

  const watch = runtime.transitions;
  if (watch) {
    out.histogram(
      'sandboxd_transition_duration_seconds',
      'How long each transition took, from the intent to its outcome (events explain pairs them the same way).',
      watch.durations.bounds,
      watch.durations.snapshot(),
    );
    out.metric('sandboxd_intents_in_flight', 'gauge', 'Intents waiting for their outcome.', [
      [{}, watch.inFlight],
    ]);
    out.metric('sandboxd_intents_stuck', 'gauge', 'Intents without an outcome past their deadline now.', [
      [{}, watch.stuck(Date.now()).length],
    ]);
    out.metric(
      'sandboxd_intents_stuck_total',
      'counter',
      'Intents that went past their deadline (each once).',
      [[{}, watch.stuckTotal]],
    );
  }

  out.metric('sandboxd_event_log_last_seq', 'gauge', 'Global position of the last durable event.', [
    [{}, events.lastSeq()],
  ]);
  const store = events.stats;
  if (store) {
    out.metric('sandboxd_event_log_appends_total', 'counter', 'Appends made durable.', [[{}, store.appends]]);
    out.metric('sandboxd_event_log_events_total', 'counter', 'Events made durable.', [[{}, store.events]]);
    out.metric('sandboxd_event_log_fsyncs_total', 'counter', 'Synced batches written (group commits).', [
      [{}, store.flushes],
    ]);
    out.metric('sandboxd_event_log_fsync_seconds_total', 'counter', 'Time spent in synced batch writes.', [
      [{}, store.flushMs / 1000],
    ]);
  }

  const traffic = sources.traffic?.();
  if (traffic) {
    out.metric('sandboxd_api_connections', 'gauge', 'Open API connections.', [[{}, traffic.connections]]);
    out.metric('sandboxd_api_requests_in_flight', 'gauge', 'API requests being handled.', [
      [{}, traffic.inFlight],
    ]);
    const methods = [...traffic.requests].sort(([a], [b]) => a.localeCompare(b));
    out.metric(
      'sandboxd_api_requests_total',
      'counter',
      'API requests answered, by method and outcome.',
      methods.flatMap(([method, t]) => [
        [{ method, outcome: 'ok' }, t.ok] as const,
        [{ method, outcome: 'error' }, t.error] as const,
      ]),
    );
    out.metric(
      'sandboxd_api_request_seconds_total',
      'counter',
      'Time spent handling API requests, by method.',
      methods.map(([method, t]) => [{ method }, t.seconds] as const),
    );
  }

  const usage = await Promise.all(
    sandboxes
      .filter((s) => s.pid !== undefined)
      .map(async (s) => [s.id, await runtime.vmUsage(s.id).catch(() => undefined)] as const),
  );
  const vms = usage.flatMap(([id, u]) => (u ? [[id, u] as const] : []));
  out.metric(
    'sandboxd_vm_cpu_seconds_total',
    'counter',
    'CPU time used by each sandbox VM (QEMU, all threads).',
    vms.map(([sandbox, u]) => [{ sandbox }, u.cpuSeconds] as const),
  );
  out.metric(
    'sandboxd_vm_resident_bytes',
    'gauge',
    'Host memory resident in each sandbox VM (QEMU).',
    vms.map(([sandbox, u]) => [{ sandbox }, u.rssBytes] as const),
  );
  return out.text();
}
