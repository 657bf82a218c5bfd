// Benchmark of events explain: one sandbox (and a container, an exec) out of a 1-million-event LevelDB log,
// reading only its streams; the baseline is what explain would cost if it scanned the whole log.
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Table from 'cli-table3';
import { pino } from 'pino';
import { type NewEvent, streamOf } from '../src/events/index.js';
import { explainEntity, explainFromLog, parseEntityRef } from '../src/explain/index.js';
import { type EventStore, openLevelEventStore } from '../src/store/index.js';

const quick = process.argv.includes('--quick');
const target = quick ? 100_000 : 1_000_000;
const logger = pino({ level: 'warn' }, pino.destination(2));
let nextId = 0;
const id = () => `e${(nextId++).toString(36).padStart(8, '0')}`;

/** One event asking, then its outcomes chained by causation, as the runtime writes them. */
function chain(intent: NewEvent, ...outcomes: { type: string; data?: unknown }[]): NewEvent[] {
  const out: NewEvent[] = [{ ...intent, id: id() }];
  for (const o of outcomes) {
    out.push({ type: o.type, data: o.data ?? {}, id: id(), causationId: out[out.length - 1]!.id! });
  }
  return out;
}

/** A sandbox's life (started, stopped, deleted for one in five), two containers, one exec: 31–32 events. */
async function writeSandbox(store: EventStore, i: number): Promise<number> {
  const sb = `sb-${i.toString().padStart(6, '0')}`;
  const dir = `/bench/${sb}`;
  const handle = {
    sandboxId: sb,
    pid: 10_000 + i,
    pidStartTime: 7,
    accel: 'tcg',
    stateDir: dir,
    qmpSocket: `${dir}/qmp.sock`,
    agentSocket: `${dir}/agent.sock`,
    consoleLog: `${dir}/console.log`,
  };
  const api = (method: string) => `api:${method}:${i % 97}`;
  const sandbox: NewEvent[] = [
    {
      type: 'SandboxCreated',
      data: { sandboxId: sb, config: { vcpus: 1, memoryMiB: 256 } },
      correlationId: api('sandbox.create'),
    },
    ...chain(
      { type: 'SandboxStartRequested', data: {}, correlationId: api('sandbox.start') },
      { type: 'VmLaunched', data: { handle } },
      { type: 'AgentConnected', data: { agentVersion: 'bench' } },
      { type: 'SandboxStarted' },
    ),
  ];
  const containers: [string, NewEvent[]][] = ['app', 'side'].map((c) => [
    streamOf.container(sb, c),
    [
      ...chain(
        {
          type: 'ContainerCreateRequested',
          data: { sandboxId: sb, containerId: c, bundle: `${dir}/${c}` },
          correlationId: api('container.create'),
        },
        { type: 'ContainerCreated', data: { pid: 100 } },
      ),
      ...chain(
        { type: 'ContainerStartRequested', data: {}, correlationId: api('container.start') },
        { type: 'ContainerStarted' },
      ),
      {
        type: 'ContainerExited',
        data: { exitCode: 3, oomKilled: false },
        correlationId: 'supervision:agent',
      },
    ],
  ]);
  const exec: NewEvent[] = [
    ...chain(
      {
        type: 'ExecRequested',
        data: { sandboxId: sb, containerId: 'app', execId: 'sh', process: { args: ['sh'] } },
        correlationId: api('exec.start'),
      },
      { type: 'ExecStarted', data: { pid: 101 } },
    ),
    { type: 'ProcessExited', data: { exitCode: 137, signal: 'SIGKILL' }, correlationId: 'supervision:agent' },
  ];
  sandbox.push(
    ...chain(
      { type: 'SandboxPauseRequested', data: {}, correlationId: api('sandbox.pause') },
      { type: 'SandboxPaused' },
    ),
    ...chain(
      { type: 'SandboxResumeRequested', data: {}, correlationId: api('sandbox.resume') },
      { type: 'SandboxResumed' },
    ),
    ...chain(
      { type: 'SandboxStopRequested', data: {}, correlationId: api('sandbox.stop') },
      { type: 'SandboxStopped' },
    ),
  );
  if (i % 5 === 0) {
    sandbox.push(
      ...chain(
        { type: 'SandboxDeleteRequested', data: { force: false }, correlationId: api('sandbox.delete') },
        { type: 'SandboxDeleted' },
      ),
    );
  }
  await store.append(streamOf.sandbox(sb), 0, sandbox.slice(0, 5));
  await Promise.all(containers.map(([stream, events]) => store.append(stream, 0, events)));
  await store.append(streamOf.exec(sb, 'app', 'sh'), 0, exec);
  await store.append(streamOf.sandbox(sb), 5, sandbox.slice(5));
  return sandbox.length + containers.reduce((n, [, e]) => n + e.length, 0) + exec.length;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timed(runs: number, fn: () => Promise<unknown>): Promise<{ median: number; max: number }> {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    ms.push(performance.now() - t);
  }
  return { median: median(ms), max: Math.max(...ms) };
}

const dir = await mkdtemp(join(tmpdir(), 'sandboxd-bench-explain-'));
try {
  const path = join(dir, 'events');
  let store = await openLevelEventStore(path, { logger });
  const t0 = performance.now();
  let events = 0;
  let sandboxes = 0;
  while (events < target) {
    const batch = Array.from({ length: 256 }, (_, k) => sandboxes + k);
    const counts = await Promise.all(batch.map((i) => writeSandbox(store, i)));
    events += counts.reduce((a, b) => a + b, 0);
    sandboxes += batch.length;
  }
  const writeMs = performance.now() - t0;
  await store.close();
  const t1 = performance.now();
  store = await openLevelEventStore(path, { logger });
  const openMs = performance.now() - t1;

  const middle = `sb-${Math.floor(sandboxes / 2)
    .toString()
    .padStart(6, '0')}`;
  const refs = [middle, `${middle}/app`, `${middle}/app/sh`];
  const results: Record<string, { median: number; max: number }> = {};
  for (const ref of refs) {
    const parsed = parseEntityRef(ref);
    const x = await explainFromLog(store, parsed);
    if (x.lives.length !== 1 || !x.ended)
      throw new Error(`${ref}: unexpected explanation ${JSON.stringify(x.state)}`);
    results[ref] = await timed(20, () => explainFromLog(store, parsed));
  }
  // Baseline: find the sandbox's events by scanning the whole log (what reading "only its streams" avoids).
  const stream = streamOf.sandbox(middle);
  const scan = await timed(1, async () => {
    const mine = [];
    for await (const e of store.readAll()) if (e.stream === stream) mine.push(e);
    explainEntity(middle, new Map([[stream, mine]]));
  });
  await store.close();

  const sandboxMs = results[middle]!.median;
  const out = {
    bench: 'explain',
    quick,
    events,
    sandboxes,
    writeSeconds: Math.round(writeMs / 100) / 10,
    openMs: Math.round(openMs),
    explainSandboxMs: Math.round(sandboxMs * 100) / 100,
    explainSandboxMaxMs: Math.round(results[middle]!.max * 100) / 100,
    explainContainerMs: Math.round(results[refs[1]!]!.median * 100) / 100,
    explainExecMs: Math.round(results[refs[2]!]!.median * 100) / 100,
    fullScanMs: Math.round(scan.median),
    speedupVsScan: Math.round(scan.median / sandboxMs),
    targetMs: 100,
    loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
  };
  const table = new Table({ head: ['measure', 'ms', 'note'] });
  table.push(
    [
      'explain a sandbox',
      out.explainSandboxMs,
      `median of 20 (max ${out.explainSandboxMaxMs}); target ≤ 100`,
    ],
    ['explain a container', out.explainContainerMs, 'median of 20'],
    ['explain an exec', out.explainExecMs, 'median of 20'],
    ['baseline: scan the whole log', out.fullScanMs, `×${out.speedupVsScan} slower than reading its streams`],
    ['open the store', out.openMs, 'once per offline command (not part of explain)'],
  );
  process.stdout.write(
    `${events} events, ${sandboxes} sandboxes, written in ${out.writeSeconds} s\n${table.toString()}\n`,
  );
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
