// Task calls through the shim with a real containerd, sandboxd and VM: ctr run -d, task ls, exec (and -t),
// ps, metrics, pause/resume, kill, kill --all, delete. One daemon, one containerd, one long-running task.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { until } from './support/containerd.js';
import {
  IMAGE,
  RUNTIME,
  type ShimWorld,
  startShimWorld,
  taskStatus,
  VM_MS,
} from './support/containerd-world.js';

describe('shim task calls with a real containerd, sandboxd and VM', { timeout: 1_800_000 }, () => {
  let world: ShimWorld;
  const why = async (r: { stderr: string }) => `${r.stderr}\n--- shim log ---\n${await world.shimLog()}`;

  before(async () => {
    world = await startShimWorld();
  });

  after(async () => {
    await world?.stop();
  });

  it('ctr run -d starts a task that ctr task ls shows RUNNING with its pid', { timeout: VM_MS }, async () => {
    const r = await world.ctr(['run', '-d', '--runtime', RUNTIME, IMAGE, 't1', 'sleep', '100000']);
    assert.equal(r.code, 0, await why(r));
    const pid = await taskStatus(world, 't1', 'RUNNING');
    assert.ok(pid > 0, `pid ${pid}`);
  });

  it('ctr task exec prints stdout and stderr and exits with the exec status', {
    timeout: VM_MS,
  }, async () => {
    const r = await world.ctr([
      'task',
      'exec',
      '--exec-id',
      'e1',
      't1',
      'sh',
      '-c',
      'echo out; echo err >&2; exit 4',
    ]);
    assert.equal(r.stdout, 'out\n', await why(r));
    assert.match(r.stderr, /^err$/m, await why(r));
    assert.equal(r.code, 4, await why(r));
  });
  it('ctr task exec -t runs the exec on a terminal', { timeout: VM_MS }, async () => {
    const r = await world.ctrTty(['task', 'exec', '-t', '--exec-id', 'e2', 't1', 'sh', '-c', 'tty; exit 5']);
    assert.match(r.stdout, /^\/dev\/pts\/\d+\r?$/m, await why(r));
    assert.equal(r.code, 5, await why(r));
    // ctr's first resize is its pty's 0x0: taken, not failed.
    assert.doesNotMatch(await world.shimLog(), /"method":"ResizePty".*call failed/);
  });

  it('ctr task ps lists the task processes', { timeout: VM_MS }, async () => {
    const r = await world.ctr(['task', 'ps', 't1']);
    assert.equal(r.code, 0, await why(r));
    const pids = r.stdout
      .split('\n')
      .slice(1)
      .map((l) => Number(l.trim().split(/\s+/)[0]))
      .filter((n) => n > 0);
    assert.ok(pids.length >= 1, `ps:\n${r.stdout}`);
  });

  it('ctr task metrics decodes the cgroups metrics the shim returns', { timeout: VM_MS }, async () => {
    const table = await world.ctr(['task', 'metrics', 't1']);
    assert.equal(table.code, 0, await why(table));
    assert.match(table.stdout, /pids\.current\s+\d+/, table.stdout);
    assert.match(table.stdout, /memory\.usage\s+[1-9]\d*/, table.stdout);
    const json = await world.ctr(['task', 'metrics', '--format', 'json', 't1']);
    assert.equal(json.code, 0, await why(json));
    const m = JSON.parse(json.stdout) as { pids?: { current?: number }; cpu?: { usage_usec?: number } };
    assert.ok((m.pids?.current ?? 0) >= 1, json.stdout);
  });

  it('ctr task pause and resume show PAUSED then RUNNING', { timeout: VM_MS }, async () => {
    const p = await world.ctr(['task', 'pause', 't1']);
    assert.equal(p.code, 0, await why(p));
    await taskStatus(world, 't1', 'PAUSED');
    const r = await world.ctr(['task', 'resume', 't1']);
    assert.equal(r.code, 0, await why(r));
    await taskStatus(world, 't1', 'RUNNING');
  });

  it('ctr task kill sends SIGTERM by default and delete reports the exit status', {
    timeout: VM_MS,
  }, async () => {
    const r = await world.ctr([
      'run',
      '-d',
      '--runtime',
      RUNTIME,
      IMAGE,
      't2',
      'sh',
      '-c',
      'trap "exit 7" TERM; touch /trapped; while :; do sleep 1; done',
    ]);
    assert.equal(r.code, 0, await why(r));
    await taskStatus(world, 't2', 'RUNNING');
    // RUNNING is before the shell set its trap; an init without a handler ignores a TERM (pid namespace).
    let n = 0;
    await until('t2 to trap TERM', async () => {
      const t = await world.ctr([
        'task',
        'exec',
        '--exec-id',
        `trapped${n++}`,
        't2',
        'test',
        '-e',
        '/trapped',
      ]);
      return t.code === 0 ? true : undefined;
    });
    const k = await world.ctr(['task', 'kill', 't2']);
    assert.equal(k.code, 0, await why(k));
    await taskStatus(world, 't2', 'STOPPED');
    const d = await world.ctr(['task', 'delete', 't2']);
    // ctr task delete reports a task's status as a warning and exits 0.
    assert.match(d.stderr, /exit with non-zero exit code 7\b/, await why(d));
    assert.equal((await world.ctr(['containers', 'delete', 't2'])).code, 0);
  });

  it('ctr task kill --all signals every process, a plain kill only the init', {
    timeout: VM_MS,
  }, async () => {
    // The init traps TERM without exiting, and waits for its two children.
    const script = 'trap "touch /termed" TERM; sleep 100000 & sleep 100000 & until wait; do :; done; exit 9';
    const r = await world.ctr(['run', '-d', '--runtime', RUNTIME, IMAGE, 't3', 'sh', '-c', script]);
    assert.equal(r.code, 0, await why(r));
    await taskStatus(world, 't3', 'RUNNING');
    const count = async () => (await world.ctr(['task', 'ps', 't3'])).stdout.trim().split('\n').length - 1;
    await until('three processes in t3', async () => ((await count()) === 3 ? true : undefined));
    assert.equal((await world.ctr(['task', 'kill', 't3'])).code, 0);
    // The init's trap ran (it touched /termed) and it goes on waiting: the task and its children live on.
    let n = 0;
    await until('the init of t3 to take the TERM', async () => {
      const t = await world.ctr(['task', 'exec', '--exec-id', `termed${n++}`, 't3', 'test', '-e', '/termed']);
      return t.code === 0 ? true : undefined;
    });
    await taskStatus(world, 't3', 'RUNNING');
    assert.equal(await count(), 3);
    const all = await world.ctr(['task', 'kill', '--all', 't3']);
    assert.equal(all.code, 0, await why(all));
    await taskStatus(world, 't3', 'STOPPED');
    const d = await world.ctr(['task', 'delete', 't3']);
    // ctr task delete reports a task's status as a warning and exits 0.
    assert.match(d.stderr, /exit with non-zero exit code 9\b/, await why(d));
    assert.equal((await world.ctr(['containers', 'delete', 't3'])).code, 0);
  });

  it('ctr task kill -s 9 ends the task with 137 and ctr task delete removes it', {
    timeout: VM_MS,
  }, async () => {
    const k = await world.ctr(['task', 'kill', '-s', '9', 't1']);
    assert.equal(k.code, 0, await why(k));
    await taskStatus(world, 't1', 'STOPPED');
    const d = await world.ctr(['task', 'delete', 't1']);
    // ctr task delete reports a task's status as a warning and exits 0.
    assert.match(d.stderr, /exit with non-zero exit code 137\b/, await why(d));
    assert.equal((await world.ctr(['task', 'ls', '-q'])).stdout.trim(), '');
    assert.equal((await world.ctr(['containers', 'delete', 't1'])).code, 0);
  });

  it('ctr run -t runs the task on a terminal and exits with its status', { timeout: VM_MS }, async () => {
    const r = await world.ctrTty([
      'run',
      '-t',
      '--rm',
      '--runtime',
      RUNTIME,
      IMAGE,
      't5',
      'sh',
      '-c',
      'tty; exit 6',
    ]);
    assert.match(r.stdout, /^\/dev\/pts\/\d+\r?$/m, await why(r));
    assert.equal(r.code, 6, await why(r));
  });

  it('ctr events shows a task create, start, exit and delete in that order', { timeout: VM_MS }, async () => {
    const events = world.ctrd.ctrSpawn(['events']);
    try {
      // ctr events prints nothing until something happens: a container create is the barrier that it listens.
      const probe = await world.ctr(['containers', 'create', IMAGE, 'probe']);
      assert.equal(probe.code, 0, probe.stderr);
      await until('ctr events to listen', () =>
        events.stdout().includes('/containers/create') ? true : undefined,
      );
      const r = await world.ctr(['run', '--rm', '--runtime', RUNTIME, IMAGE, 't6', 'sh', '-c', 'exit 2']);
      assert.equal(r.code, 2, await why(r));
      const topics = () =>
        events
          .stdout()
          .split('\n')
          .filter((l) => l.includes('"t6"') || l.includes('container_id":"t6'))
          .map((l) => l.match(/\/tasks\/[a-z-]+/)?.[0])
          .filter((t): t is string => t !== undefined);
      await until('the TaskDelete of t6', () => (topics().includes('/tasks/delete') ? true : undefined));
      assert.deepEqual(
        topics(),
        ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete'],
        events.stdout(),
      );
    } finally {
      events.child.kill('SIGTERM');
      await world.ctr(['containers', 'delete', 'probe']);
    }
  });
});
