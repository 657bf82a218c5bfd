// events stuck and explain across a kill -9: an intent without an outcome is listed until recovery settles it.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ApiClient, connectApi } from '../src/api/index.js';
import type { Explanation, StuckIntent } from '../src/explain/index.js';
import { exited, sandboxctl, spawnUntil } from './support/processes.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/daemon-fakeworld.js', import.meta.url));

describe('events stuck across a daemon killed with SIGKILL (real daemon, LevelDB, fake world)', () => {
  let dir: string;
  let stateDir: string;
  let socket: string;
  const children: import('node:child_process').ChildProcess[] = [];
  const clients: ApiClient[] = [];
  const start = async (env: NodeJS.ProcessEnv = {}) => {
    const d = await spawnUntil(FIXTURE, [stateDir, socket], /ready \d+/, { env });
    children.push(d.child);
    return d.child;
  };
  const json = async <T>(...args: string[]): Promise<T> => {
    const r = await sandboxctl(['--json', ...args]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as T;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-explain-'));
    stateDir = join(dir, 'state');
    socket = join(dir, 'sandboxd.sock');
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('lists a start whose launch never answered, online, offline after kill -9, and not once recovery settled it', async () => {
    const daemon = await start({ FAKE_HANG: 'launch' });
    const c = await connectApi(socket);
    clients.push(c);
    await c.call('sandbox.create', { id: 'web' });
    // The start never returns: its launch hangs. It is left in flight when the daemon dies.
    c.call('sandbox.start', { id: 'web' }).catch(() => undefined);
    let online: StuckIntent[] = [];
    const deadline = Date.now() + 20_000;
    while (online.length === 0) {
      assert.ok(Date.now() < deadline, 'the start never showed as in flight');
      online = (await c.call('events.stuck', { olderThanMs: 0 })) as StuckIntent[];
    }
    assert.equal(online[0]!.stream, 'sandbox-web');
    assert.equal(online[0]!.intent, 'SandboxStartRequested');
    assert.equal(online[0]!.step, 'starting.launching');
    assert.equal(online[0]!.effect, 'launchVm');
    assert.equal(online[0]!.deadlineMs, 90_000);
    assert.match(online[0]!.by, /^api sandbox\.start \(connection \d+\)$/);
    // Within its deadline it is in flight, not stuck.
    assert.deepEqual(await c.call('events.stuck', {}), []);
    const cli = await json<StuckIntent[]>('--socket', socket, 'events', 'stuck', '--older-than', '0ms');
    assert.deepEqual(
      cli.map((s) => s.stream),
      ['sandbox-web'],
    );

    daemon.kill('SIGKILL');
    await exited(daemon);
    const offline = await json<StuckIntent[]>(
      '--state-dir',
      stateDir,
      'events',
      'stuck',
      '--older-than',
      '0ms',
    );
    assert.deepEqual(
      offline.map((s) => [s.stream, s.intent, s.step, s.effect]),
      [['sandbox-web', 'SandboxStartRequested', 'starting.launching', 'launchVm']],
    );
    assert.deepEqual(
      await json('--state-dir', stateDir, 'events', 'stuck'),
      [],
      'not past its 90 s deadline',
    );

    // A restarted daemon reconciles before it serves: the launch had no outcome and no VM, so it failed.
    await start();
    assert.deepEqual(await json('--socket', socket, 'events', 'stuck', '--older-than', '0ms'), []);
    const x = await json<Explanation>('--socket', socket, 'events', 'explain', 'web');
    const op = x.lives[0]!.operations.find((o) => o.intent === 'SandboxStartRequested')!;
    assert.equal(op.settled, 'recovery');
    assert.deepEqual([op.from, op.to, op.endedBy], ['created', 'failed', 'SandboxStartFailed']);
    assert.equal(x.ended, 'failed: recovery: Internal: the daemon restarted while launching the VM');
    const human = await sandboxctl(['--state-dir', stateDir, 'events', 'explain', 'web']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /sandbox web: failed — failed: recovery/);
    assert.match(human.stdout, /recovery \(SandboxStartFailed\)/);
  });

  it('counts the start of a healthy sandbox in sandboxd_transition_duration_seconds', async () => {
    const c = await connectApi(socket);
    clients.push(c);
    await c.call('sandbox.create', { id: 'ok' });
    await c.call('sandbox.start', { id: 'ok' });
    const { metrics } = (await c.call('daemon.metrics', {})) as { metrics: string };
    assert.match(metrics, /# TYPE sandboxd_transition_duration_seconds histogram/);
    assert.match(
      metrics,
      /sandboxd_transition_duration_seconds_count\{entity="sandbox",from="created",to="running"\} 1\n/,
    );
    assert.match(
      metrics,
      /sandboxd_transition_duration_seconds_bucket\{entity="sandbox",from="created",to="running",le="\+Inf"\} 1\n/,
    );
    assert.match(metrics, /sandboxd_intents_stuck 0\n/);
    assert.deepEqual(await c.call('events.stuck', { olderThanMs: 0 }), []);
  });

  it('refuses a malformed --older-than and entity with typed errors', async () => {
    const bad = await sandboxctl(['--socket', socket, 'events', 'stuck', '--older-than', 'soon']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /older-than/);
    const ref = await sandboxctl(['--socket', socket, 'events', 'explain', 'a/b/c/d']);
    assert.notEqual(ref.code, 0);
    assert.match(ref.stderr, /entity/);
    const missing = await sandboxctl(['--socket', socket, 'events', 'explain', 'nosuch']);
    assert.match(missing.stderr, /not found/);
  });
});
