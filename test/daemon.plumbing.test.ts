// The daemon process around the runtime (over the FAKE world): modes, stale/live sockets, second daemon, SIGTERM, kill -9.
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { exited, runToEnd, sandboxctl, spawnUntil } from './support/processes.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/daemon-fakeworld.js', import.meta.url));

describe('daemon plumbing (fake world)', () => {
  let dir: string;
  let stateDir: string;
  let socket: string;
  const children: import('node:child_process').ChildProcess[] = [];
  const start = async (sock = socket, state = stateDir) => {
    const d = await spawnUntil(FIXTURE, [state, sock], /ready \d+/);
    children.push(d.child);
    return d;
  };
  const ctl = (...args: string[]) => sandboxctl(['--socket', socket, ...args]);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-daemon-'));
    stateDir = join(dir, 'state');
    socket = join(dir, 'run', 'sandboxd.sock');
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('creates the state dir 0700 and the socket 0600, and serves sandboxctl', async () => {
    await start();
    assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
    assert.equal((await stat(socket)).mode & 0o777, 0o600);
    const info = await ctl('--json', 'info');
    assert.equal(info.code, 0, info.stderr);
    assert.equal(JSON.parse(info.stdout).stateDir, stateDir);
  });

  it('refuses a second daemon on the same state dir with a clear error', async () => {
    const r = await runToEnd(FIXTURE, [stateDir, join(dir, 'other.sock')]);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /state dir .* is in use by another sandboxd \(pid \d+, socket .*\)/);
  });

  it('refuses a second daemon on a live socket even with another state dir', async () => {
    const r = await runToEnd(FIXTURE, [join(dir, 'state2'), socket]);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /served by a running sandboxd/);
  });

  it('runs the lifecycle through sandboxctl with tables, --json and exit codes', async () => {
    const created = await ctl('sandbox', 'create', 'web1', '--memory', '256', '--start');
    assert.equal(created.code, 0, created.stderr);
    const list = await ctl('sandbox', 'ls');
    assert.match(list.stdout, /web1.*running/);
    const json = JSON.parse((await ctl('--json', 'sandbox', 'status', 'web1')).stdout);
    assert.equal(json.state, 'running');
    assert.equal((await ctl('sandbox', 'status', 'nope')).code, 3, 'not found');
    assert.equal((await ctl('sandbox', 'create', 'web1')).code, 4, 'already exists');
    assert.equal((await ctl('sandbox', 'resume', 'web1')).code, 5, 'invalid state');
    assert.equal((await ctl('sandbox', 'create', '../x')).code, 2, 'invalid argument');
    assert.equal((await ctl('sandbox', 'frobnicate')).code, 2, 'usage');
    assert.equal((await sandboxctl(['--socket', join(dir, 'none.sock'), 'info'])).code, 9, 'unreachable');
    assert.equal((await ctl('sandbox', 'pause', 'web1')).code, 0);
    assert.equal((await ctl('sandbox', 'resume', 'web1')).code, 0);
  });

  it('shows and replays a stream and verifies the log online', async () => {
    const ls = await ctl('--json', 'events', 'ls', '--stream', 'sandbox-web1');
    assert.equal(ls.code, 0, ls.stderr);
    const events = JSON.parse(ls.stdout) as { type: string; version: number }[];
    assert.ok(events.length >= 4);
    assert.equal(events[0]!.type, 'SandboxCreated');
    const show = JSON.parse((await ctl('--json', 'events', 'show', 'sandbox-web1')).stdout) as {
      state: string;
    }[];
    assert.equal(show[0]!.state, 'created');
    assert.equal(show.at(-1)!.state, 'running');
    const replay = JSON.parse(
      (await ctl('--json', 'events', 'replay', 'sandbox-web1', '--until', 'v1')).stdout,
    );
    assert.equal(replay.state, 'created');
    assert.equal(replay.version, 1);
    const verify = await ctl('events', 'verify');
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /OK/);
    assert.match(verify.stderr, /verify: transitions/);
    const stats = JSON.parse((await ctl('--json', 'events', 'stats')).stdout);
    assert.ok(stats.byType.SandboxCreated.count >= 1);
    // --state-dir while the daemon holds the log: the command goes through the daemon (at the socket it recorded).
    const held = await ctl('--state-dir', stateDir, '--json', 'events', 'ls', '--stream', 'sandbox-web1');
    assert.equal(held.code, 0, held.stderr);
    assert.equal((JSON.parse(held.stdout) as unknown[]).length, events.length);
  });

  it('stops on SIGTERM with exit 0, removing its socket', async () => {
    const d = children.at(-1)!;
    d.kill('SIGTERM');
    assert.equal(await exited(d), 0);
    await assert.rejects(stat(socket));
  });

  it('reads the log offline with --state-dir when no daemon runs', async () => {
    const verify = await sandboxctl(['--state-dir', stateDir, 'events', 'verify']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /== verify summary \(offline\) ==/);
    const streams = JSON.parse(
      (await sandboxctl(['--state-dir', stateDir, '--json', 'events', 'streams'])).stdout,
    ) as {
      stream: string;
    }[];
    assert.ok(streams.some((s) => s.stream === 'sandbox-web1'));
    const exp = await sandboxctl(['--state-dir', stateDir, 'events', 'export']);
    const lines = exp.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number });
    assert.deepEqual(
      lines.map((l) => l.seq),
      lines.map((_, i) => i + 1),
    );
  });

  it('replaces a stale socket after kill -9 and recovers the sandboxes from the log', async () => {
    const d = await start();
    d.child.kill('SIGKILL');
    await exited(d.child);
    assert.ok((await stat(socket)).isSocket(), 'the crashed daemon left its socket');
    await start();
    const list = JSON.parse((await ctl('--json', 'sandbox', 'ls')).stdout) as { id: string; state: string }[];
    const web1 = list.find((s) => s.id === 'web1');
    assert.ok(web1, 'the sandbox is known again');
    const verify = await ctl('events', 'verify');
    assert.equal(verify.code, 0, verify.stdout);
    children.at(-1)!.kill('SIGTERM');
    await exited(children.at(-1)!);
  });
});
