// bench:api — sandbox.status latency/throughput under 32 clients vs a bare JSON-RPC echo over the same kind of
// socket (same run, same client), and lifecycle latency through the API over the in-memory FAKE world.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JSONRPCServer } from 'json-rpc-2.0';
import { pino } from 'pino';
import { createRuntime } from '../src/actors/index.js';
import { type ApiClient, connectApi, createApiServer, LineDecoder } from '../src/api/index.js';
import { createMemoryEventStore } from '../src/store/index.js';
import { FakeAgent, FakeHypervisor, FakeWorld } from '../test/support/fake-world.js';

const quick = process.argv.includes('--quick');
const CLIENTS = 32;
const DURATION_MS = quick ? 1500 : 5000;
const LIFECYCLES = quick ? 30 : 200;
const silent = pino({ level: 'silent' });

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Closed loop: each client sends its next request when the previous answered, for DURATION_MS. */
async function load(
  clients: ApiClient[],
  method: string,
  params: unknown,
): Promise<{ p50: number; p99: number; opsPerSec: number; count: number }> {
  const latencies: number[] = [];
  const started = performance.now();
  const until = started + DURATION_MS;
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() < until) {
        const t = performance.now();
        await c.call(method, params);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const elapsed = performance.now() - started;
  latencies.sort((a, b) => a - b);
  return {
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    opsPerSec: (latencies.length / elapsed) * 1000,
    count: latencies.length,
  };
}

/** The baseline: json-rpc-2.0 with one `echo` method, newline framing, nothing else. */
async function startEchoServer(socketPath: string) {
  const rpc = new JSONRPCServer();
  rpc.addMethod('echo', (params: unknown) => params);
  const server = createServer((socket) => {
    const decoder = new LineDecoder(
      1024 * 1024,
      (line) => {
        void rpc.receiveJSON(line).then((r) => {
          if (r && !socket.destroyed) socket.write(`${JSON.stringify(r)}\n`);
        });
      },
      () => undefined,
    );
    socket.on('data', (c: Buffer) => decoder.push(c));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
  return server;
}

const dir = await mkdtemp(join(tmpdir(), 'sandboxd-bench-api-'));
try {
  const world = new FakeWorld();
  const store = createMemoryEventStore();
  const runtime = await createRuntime({
    store,
    hypervisor: new FakeHypervisor(world),
    agent: new FakeAgent(world),
    stateDir: join(dir, 'state'),
    image: async () => ({ kernel: '/fake/k', initrd: '/fake/i', rootDir: '/fake/r', version: 'fake' }),
    logger: silent,
  });
  const apiSocket = join(dir, 'api.sock');
  const api = createApiServer({
    runtime,
    events: store,
    facts: { version: 'bench', pid: process.pid, startedAt: new Date().toISOString() },
    logger: silent,
  });
  await api.listen(apiSocket);
  const echoSocket = join(dir, 'echo.sock');
  const echo = await startEchoServer(echoSocket);

  const setup = await connectApi(apiSocket);
  await setup.call('sandbox.create', { id: 'bench' });
  await setup.call('sandbox.start', { id: 'bench' });

  const apiClients = await Promise.all(Array.from({ length: CLIENTS }, () => connectApi(apiSocket)));
  const echoClients = await Promise.all(Array.from({ length: CLIENTS }, () => connectApi(echoSocket)));
  // Warm both paths (JIT, sockets) before measuring.
  await Promise.all(apiClients.map((c) => c.call('sandbox.status', { id: 'bench' })));
  await Promise.all(echoClients.map((c) => c.call('echo', { id: 'bench' })));

  const baseline = await load(echoClients, 'echo', { id: 'bench' });
  const status = await load(apiClients, 'sandbox.status', { id: 'bench' });

  // Lifecycle through the API: create → start → stop → delete, one sandbox at a time.
  const steps = {
    create: [] as number[],
    start: [] as number[],
    stop: [] as number[],
    delete: [] as number[],
  };
  const total: number[] = [];
  for (let i = 0; i < LIFECYCLES; i++) {
    const id = `lc-${i}`;
    const t0 = performance.now();
    await setup.call('sandbox.create', { id });
    const t1 = performance.now();
    await setup.call('sandbox.start', { id });
    const t2 = performance.now();
    await setup.call('sandbox.stop', { id });
    const t3 = performance.now();
    await setup.call('sandbox.delete', { id });
    const t4 = performance.now();
    steps.create.push(t1 - t0);
    steps.start.push(t2 - t1);
    steps.stop.push(t3 - t2);
    steps.delete.push(t4 - t3);
    total.push(t4 - t0);
  }
  for (const v of Object.values(steps)) v.sort((a, b) => a - b);
  total.sort((a, b) => a - b);

  for (const c of [...apiClients, ...echoClients, setup]) c.close();
  await api.close({ graceMs: 1000 });
  await new Promise<void>((r) => echo.close(() => r()));
  await runtime.shutdown();

  const f = (n: number) => n.toFixed(3);
  console.log(
    `bench:api (${quick ? 'quick' : 'full'}): ${CLIENTS} concurrent clients, ${DURATION_MS} ms per run`,
  );
  console.log('');
  console.log('| run                              | p50 ms | p99 ms | ops/s  | requests |');
  console.log('|----------------------------------|--------|--------|--------|----------|');
  console.log(
    `| bare JSON-RPC echo (baseline)    | ${f(baseline.p50)} | ${f(baseline.p99)} | ${Math.round(baseline.opsPerSec)} | ${baseline.count} |`,
  );
  console.log(
    `| sandbox.status (sandboxd API)    | ${f(status.p50)} | ${f(status.p99)} | ${Math.round(status.opsPerSec)} | ${status.count} |`,
  );
  console.log('');
  console.log(
    `lifecycle through the API over the in-memory FAKE world (${LIFECYCLES} sandboxes, one at a time):`,
  );
  console.log('| step    | p50 ms | p99 ms |');
  console.log('|---------|--------|--------|');
  for (const [k, v] of Object.entries(steps))
    console.log(`| ${k.padEnd(7)} | ${f(percentile(v, 50))} | ${f(percentile(v, 99))} |`);
  console.log(`| total   | ${f(percentile(total, 50))} | ${f(percentile(total, 99))} |`);
  console.log('');
  console.log(
    `status/echo throughput ratio ${(status.opsPerSec / baseline.opsPerSec).toFixed(3)}, p50 ratio ${(status.p50 / baseline.p50).toFixed(3)}`,
  );
  console.log(
    JSON.stringify({
      bench: 'api',
      quick,
      clients: CLIENTS,
      durationMs: DURATION_MS,
      statusP50Ms: +status.p50.toFixed(4),
      statusP99Ms: +status.p99.toFixed(4),
      statusOpsPerSec: Math.round(status.opsPerSec),
      echoP50Ms: +baseline.p50.toFixed(4),
      echoP99Ms: +baseline.p99.toFixed(4),
      echoOpsPerSec: Math.round(baseline.opsPerSec),
      throughputRatio: +(status.opsPerSec / baseline.opsPerSec).toFixed(4),
      p50Ratio: +(status.p50 / baseline.p50).toFixed(4),
      p99Ratio: +(status.p99 / baseline.p99).toFixed(4),
      lifecycles: LIFECYCLES,
      lifecycleP50Ms: +percentile(total, 50).toFixed(4),
      lifecycleP99Ms: +percentile(total, 99).toFixed(4),
      lifecycleStepP50Ms: Object.fromEntries(
        Object.entries(steps).map(([k, v]) => [k, +percentile(v, 50).toFixed(4)]),
      ),
    }),
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
