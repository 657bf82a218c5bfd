// Benchmark of recovery: a big log of sandboxes, containers and execs rebuilt into live actors, with and without
// snapshots, from the real LevelDB event log (reopened for every phase, as a restarted daemon does; `--store memory`
// measures the fold alone over the in-memory store).
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import Table from 'cli-table3';
import { pino } from 'pino';
import { Subject } from 'rxjs';
import { createRuntime, type RuntimeHandle } from '../src/actors/index.js';
import { type NewEvent, streamOf } from '../src/events/index.js';
import type { VmEvent, VmHandle } from '../src/hypervisor/index.js';
import { initialSnapshot } from '../src/machines/index.js';
import { createMemoryEventStore, type EventStore, openLevelEventStore } from '../src/store/index.js';
import { FakeAgent, FakeHypervisor, type FakeVm, FakeWorld } from '../test/support/fake-world.js';

const quick = process.argv.includes('--quick');
const storeKind = process.argv.includes('--store')
  ? process.argv[process.argv.indexOf('--store') + 1]
  : 'level';
if (storeKind !== 'level' && storeKind !== 'memory')
  throw new Error(`--store: level or memory, not ${storeKind}`);
const sandboxes = quick ? 1_000 : 10_000;
const containersPer = 3;
const execsPer = 2;
const logger = pino({ level: 'warn' }, pino.destination(2));

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapUsed = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

type Kind = 'running' | 'paused' | 'stopped' | 'created' | 'failed' | 'lost' | 'deleted';

/** Varied states: mostly running, some paused/stopped/lost/deleted, a few never started or failed. */
function kindOf(i: number): Kind {
  const r = i % 20;
  if (r < 12) return 'running';
  if (r < 14) return 'paused';
  if (r < 16) return 'stopped';
  if (r === 16) return 'created';
  if (r === 17) return 'failed';
  if (r === 18) return 'lost';
  return 'deleted';
}

const ev = (type: string, data: unknown = {}): NewEvent => ({ type, data });

/** Appends one sandbox's life, as the runtime would have written it; records its VM in the world. */
async function writeSandbox(store: EventStore, world: FakeWorld, i: number): Promise<number> {
  const id = `sb-${i.toString().padStart(5, '0')}`;
  const kind = kindOf(i);
  const stateDir = `/bench/sandboxes/${id}/vm`;
  const handle: VmHandle = {
    sandboxId: id,
    pid: 10_000 + i,
    pidStartTime: 7,
    accel: 'tcg',
    stateDir,
    qmpSocket: `${stateDir}/qmp.sock`,
    agentSocket: `${stateDir}/agent.sock`,
    consoleLog: `${stateDir}/console.log`,
  };
  let events = 0;
  const append = async (stream: string, list: NewEvent[]) => {
    const version = await store.streamVersion(stream);
    await store.append(stream, version, list);
    events += list.length;
  };
  const sandbox = streamOf.sandbox(id);
  await append(sandbox, [ev('SandboxCreated', { sandboxId: id, config: { vcpus: 1, memoryMiB: 512 } })]);
  if (kind === 'created') return events;
  if (kind === 'failed') {
    await append(sandbox, [
      ev('SandboxStartRequested'),
      ev('VmLaunched', { handle }),
      ev('SandboxStartFailed', { error: { step: 'connectAgent', kind: 'Timeout', message: 'timed out' } }),
    ]);
    return events;
  }
  await append(sandbox, [
    ev('SandboxStartRequested'),
    ev('VmLaunched', { handle }),
    ev('AgentConnected', { agentVersion: '1' }),
    ev('SandboxStarted'),
  ]);
  const vm: FakeVm | undefined =
    kind === 'running' || kind === 'paused'
      ? {
          handle,
          config: {
            sandboxId: id,
            stateDir,
            sharedDir: '/bench/shared',
            image: { kernel: '', initrd: '', rootDir: '', version: '' },
            vcpus: 1,
            maxVcpus: 4,
            memoryMiB: 512,
            maxMemoryMiB: 4096,
          },
          status: kind,
          containers: new Map(),
          guestReady: true,
          vmEvents: new Subject<VmEvent>(),
        }
      : undefined;
  if (vm) world.vms.set(id, vm);
  for (let c = 0; c < containersPer; c++) {
    const cid = `c${c}`;
    const stream = streamOf.container(id, cid);
    await append(stream, [
      ev('ContainerCreateRequested', { sandboxId: id, containerId: cid, bundle: `/bundles/${cid}` }),
      ev('ContainerCreated', { pid: 100 + c }),
      ev('ContainerStartRequested'),
      ev('ContainerStarted'),
    ]);
    const processes = new Map<string, { pid: number; running: boolean; exit?: { exitCode: number } }>();
    for (let e = 0; e < execsPer; e++) {
      const eid = `e${e}`;
      const running = e === 0 && c !== 1;
      await append(streamOf.exec(id, cid, eid), [
        ev('ExecRequested', {
          sandboxId: id,
          containerId: cid,
          execId: eid,
          process: { args: ['sh', '-c', 'work'] },
        }),
        ev('ExecStarted', { pid: 200 + e }),
        ...(running ? [] : [ev('ProcessExited', { exitCode: 0 })]),
      ]);
      processes.set(
        eid,
        running ? { pid: 200 + e, running } : { pid: 200 + e, running, exit: { exitCode: 0 } },
      );
    }
    // c0 runs, c1 exited, c2 paused.
    if (c === 1) await append(stream, [ev('ContainerExited', { exitCode: 0, oomKilled: false })]);
    if (c === 2) await append(stream, [ev('ContainerPauseRequested'), ev('ContainerPaused')]);
    vm?.containers.set(cid, {
      id: cid,
      status: c === 0 ? 'running' : c === 1 ? 'stopped' : 'paused',
      pid: 100 + c,
      ...(c === 1 ? { exit: { exitCode: 0 } } : {}),
      processes,
    });
  }
  if (kind === 'paused') await append(sandbox, [ev('SandboxPauseRequested'), ev('SandboxPaused')]);
  if (kind === 'stopped' || kind === 'deleted' || kind === 'lost') {
    await append(
      sandbox,
      kind === 'lost'
        ? [ev('VmExited', { reason: 'killed' })]
        : [ev('SandboxStopRequested'), ev('SandboxStopped')],
    );
    // The cascade the runtime appends when a sandbox goes down.
    for (let c = 0; c < containersPer; c++) {
      if (c !== 1)
        await append(streamOf.container(id, `c${c}`), [ev('ContainerLost', { reason: `sandbox ${kind}` })]);
      if (c !== 1)
        await append(streamOf.exec(id, `c${c}`, 'e0'), [ev('ProcessLost', { reason: 'container stopped' })]);
    }
  }
  if (kind === 'deleted')
    await append(sandbox, [ev('SandboxDeleteRequested', { force: false }), ev('SandboxDeleted')]);
  return events;
}

/** CPU time of this process during each timed section: on a shared, loaded machine wall time lies. */
const cpuMs: Record<string, number> = {};

async function timed<T>(fn: () => Promise<T>, name?: string): Promise<[T, number]> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  if (name) cpuMs[name] = Math.round((c.user + c.system) / 1000);
  return [value, wall];
}

/** Copies a log into LevelDB in seq order: appends queued without waiting (group commit), in windows. */
async function copyLog(from: EventStore, to: EventStore): Promise<void> {
  let window: Promise<unknown>[] = [];
  for await (const e of from.readAll()) {
    window.push(to.append(e.stream, e.version - 1, [{ type: e.type, data: e.data }]));
    if (window.length >= 4096) {
      await Promise.all(window);
      window = [];
    }
  }
  await Promise.all(window);
}

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'sandboxd-bench-recovery-'));
  const built = createMemoryEventStore();
  let store: EventStore = built;
  const logDir = join(dir, 'log');
  /** A restarted daemon opens its log first (heads, last seq): part of every measured phase. */
  const reopen = async () => {
    if (storeKind === 'memory') return;
    await store.close();
    store = await openLevelEventStore(logDir, { logger });
  };
  const world = new FakeWorld();
  initialSnapshot('sandbox');
  try {
    const [events, buildMs] = await timed(async () => {
      let n = 0;
      for (let i = 0; i < sandboxes; i++) n += await writeSandbox(built, world, i);
      if (storeKind === 'level') {
        store = await openLevelEventStore(logDir, { logger });
        await copyLog(built, store);
        await built.close();
      }
      return n;
    });

    // Baseline: only opening and reading the log back, no machine.
    const [, readMs] = await timed(async () => {
      await reopen();
      let n = 0;
      for await (const _ of store.readAll()) n += 1;
      return n;
    }, 'baselineRead');

    const open = (snapshots: boolean, effects: boolean): Promise<RuntimeHandle> =>
      createRuntime({
        store,
        hypervisor: new FakeHypervisor(world),
        agent: new FakeAgent(world),
        stateDir: dir,
        logger,
        effects,
        snapshots,
      });

    const heapBefore = heapUsed();
    const [plain, recoverMsNoSnapshots] = await timed(async () => {
      await reopen();
      return open(false, false);
    }, 'recoverNoSnapshots');
    const heapAfter = heapUsed();
    const live = plain.listSandboxes().length;
    const heapBytesPerSandbox = Math.round((heapAfter - heapBefore) / live);
    const [saved, saveMs] = await timed(() => plain.saveSnapshots());
    const statesPlain = plain
      .listSandboxes()
      .map((s) => s.state)
      .join();
    await plain.shutdown();

    const [fromSnapshots, recoverMsWithSnapshots] = await timed(async () => {
      await reopen();
      return open(true, false);
    }, 'recoverWithSnapshots');
    const statesSnap = fromSnapshots
      .listSandboxes()
      .map((s) => s.state)
      .join();
    if (statesSnap !== statesPlain) throw new Error('snapshot recovery disagrees with full replay');
    await fromSnapshots.shutdown();

    // Full daemon start: snapshots + reconciliation against the (fake) world, effects on.
    const [reconciled, startMs] = await timed(async () => {
      await reopen();
      return open(true, true);
    }, 'startWithReconcile');
    const report = reconciled.recovery;
    await reconciled.shutdown();

    const replayEventsPerSec = Math.round(events / (recoverMsNoSnapshots / 1000));
    const table = new Table({ head: ['measure', 'value', 'target'] });
    table.push(
      ['event store', storeKind === 'level' ? 'LevelDB (reopened per phase)' : 'memory', ''],
      ['sandboxes (live after recovery)', `${sandboxes} (${live})`, ''],
      ['machine load (1 min)', loadavg()[0]!.toFixed(1), ''],
      ['containers / execs', `${report.containers} / ${report.execs}`, ''],
      ['events in the log', events, ''],
      ['build the log', `${buildMs.toFixed(0)} ms`, ''],
      ['baseline: read the log, no machines', `${readMs.toFixed(0)} ms`, ''],
      [
        'recover, no snapshots (fold the log)',
        `${recoverMsNoSnapshots.toFixed(0)} ms (cpu ${cpuMs.recoverNoSnapshots} ms)`,
        '≤ 5000 ms',
      ],
      ['  ratio to the baseline read', `${(recoverMsNoSnapshots / readMs).toFixed(2)}×`, ''],
      ['  replay rate', `${replayEventsPerSec.toLocaleString('en')} events/s`, ''],
      ['save snapshots', `${saved} in ${saveMs.toFixed(0)} ms`, ''],
      [
        'recover, with snapshots',
        `${recoverMsWithSnapshots.toFixed(0)} ms (cpu ${cpuMs.recoverWithSnapshots} ms)`,
        '≤ 1000 ms',
      ],
      [
        'heap per live sandbox (+3 containers, 6 execs)',
        `${(heapBytesPerSandbox / 1024).toFixed(1)} KiB`,
        '≤ 64 KiB',
      ],
      [
        'start with reconcile (fake world)',
        `${startMs.toFixed(0)} ms (reconcile ${report.reconcileMs.toFixed(0)} ms, ${report.reattached.length} reattached, ${report.appended} events)`,
        '',
      ],
    );
    console.log(table.toString());
    console.log(
      JSON.stringify({
        bench: 'recovery',
        quick,
        store: storeKind,
        sandboxes,
        liveSandboxes: live,
        containers: report.containers,
        execs: report.execs,
        events,
        baselineReadMs: Math.round(readMs),
        recoverMsNoSnapshots: Math.round(recoverMsNoSnapshots),
        ratioToBaselineRead: Number((recoverMsNoSnapshots / readMs).toFixed(2)),
        recoverMsWithSnapshots: Math.round(recoverMsWithSnapshots),
        snapshotsSaved: saved,
        heapBytesPerSandbox,
        replayEventsPerSec,
        startWithReconcileMs: Math.round(startMs),
        reconcileMs: Math.round(report.reconcileMs),
        reattached: report.reattached.length,
        cpuMs,
        loadAverage1m: loadavg()[0],
        targets: { recoverMsNoSnapshots: 5000, recoverMsWithSnapshots: 1000, heapBytesPerSandbox: 65536 },
      }),
    );
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
