// Host logs with a real daemon and a real VM (one sandbox for the file): output kept byte for byte with nobody
// attached, a daemon killed -9 mid-write loses and repeats nothing, rotation under 1 MiB × 3 with `logs -f` misses
// nothing, a refused delete keeps the log and a delete removes it, a QEMU killed -9 keeps what came before.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { unmountAllUnder } from '../src/actors/index.js';
import { type ApiClient, connectApi } from '../src/api/index.js';
import { CLI, DAEMON, exited, sandboxctl, spawnUntil } from './support/processes.js';
import { exists, qemuPidsUsing, until } from './support/vm.js';

const BOOT_MS = 240_000;
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

interface Rec {
  time: string;
  stream: 'stdout' | 'stderr';
  data: string;
  partial?: boolean;
  marker?: boolean;
}

/** What the awk writer below prints: `lines` stdout lines of ~100 bytes, a stderr line every 8th. */
function expectedOutput(lines: number): { stdout: string; stderr: string } {
  const pad = 'o'.repeat(88);
  const out: string[] = [];
  const err: string[] = [];
  for (let i = 0; i < lines; i++) {
    out.push(`${pad} ${String(i).padStart(7, '0')}\n`);
    if (i % 8 === 0) err.push(`e ${String(i).padStart(7, '0')}\n`);
  }
  return { stdout: out.join(''), stderr: err.join('') };
}
const awkWriter = (lines: number) => [
  'awk',
  `BEGIN { p = sprintf("%88s", ""); gsub(/ /, "o", p); for (i = 0; i < ${lines}; i++) { printf "%s %07d\\n", p, i; if (i % 8 == 0) { printf "e %07d\\n", i > "/dev/stderr"; fflush("/dev/stderr") } } }`,
];

describe('host logs on a real daemon and VM', { timeout: 1_500_000 }, () => {
  let dir: string;
  let stateDir: string;
  let socket: string;
  let daemon: ChildProcess | undefined;
  let api: ApiClient | undefined;
  const sb = 'logs';
  const ctl = (...args: string[]) => sandboxctl(['--socket', socket, ...args], { timeoutMs: BOOT_MS });
  const call = <T>(method: string, params?: unknown) => api!.call<T>(method, params);
  const logsDir = (container: string) => join(stateDir, 'sandboxes', sb, 'logs', container);

  const startDaemon = async (...flags: string[]) => {
    const d = await spawnUntil(
      DAEMON,
      ['--state-dir', stateDir, '--socket', socket, '--log-level', 'info', ...flags],
      /"msg":"ready"/,
      { timeoutMs: BOOT_MS },
    );
    daemon = d.child;
    api = await connectApi(socket);
  };
  const stopDaemon = async (signal: NodeJS.Signals) => {
    api?.close();
    api = undefined;
    daemon!.kill(signal);
    await exited(daemon!);
  };
  const bundle = async (name: string, cmd: string[]) => {
    const r = await sandboxctl(['bundle', join(dir, name), '--', ...cmd]);
    assert.equal(r.code, 0, r.stderr);
    return join(dir, name);
  };
  const runContainer = async (id: string, cmd: string[]) => {
    await call('container.create', { sandboxId: sb, id, bundle: await bundle(id, cmd) });
    await call('container.start', { sandboxId: sb, id });
  };
  const logBytes = async (container: string) => {
    let total = 0;
    for (const f of await readdir(join(logsDir(container), 'init')).catch(() => [] as string[])) {
      if (f.endsWith('.log')) total += (await stat(join(logsDir(container), 'init', f))).size;
    }
    return total;
  };
  const output = (containerId: string, extra: Record<string, unknown> = {}) =>
    call<{ stdout: string; stderr: string; complete: boolean; next: number; records?: Rec[] }>(
      'exec.output',
      {
        sandboxId: sb,
        containerId,
        execId: '',
        timeoutMs: 60_000,
        ...extra,
      },
    );

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-e2e-logs-'));
    stateDir = join(dir, 'state');
    socket = join(dir, 's.sock');
    await startDaemon();
    await call('sandbox.create', { id: sb });
    await call('sandbox.start', { id: sb });
  });

  after(async () => {
    api?.close();
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM');
      await exited(daemon);
    }
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await unmountAllUnder(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps 10 MiB written with nobody attached byte for byte, times in order, stdout and stderr interleaved', async () => {
    const lines = 110_000;
    const expected = expectedOutput(lines);
    assert.ok(expected.stdout.length >= 10 * 1024 * 1024 - 100_000);
    await runContainer('big', awkWriter(lines));
    await until('big exited', BOOT_MS, async () =>
      (await call<{ state: string }>('container.state', { sandboxId: sb, id: 'big' })).state === 'stopped'
        ? true
        : undefined,
    );
    const r = await output('big');
    assert.equal(r.complete, true);
    assert.equal(sha(Buffer.from(r.stdout, 'base64')), sha(expected.stdout), 'stdout byte-identical');
    assert.equal(sha(Buffer.from(r.stderr, 'base64')), sha(expected.stderr), 'stderr byte-identical');
    const { records } = await output('big', { timestamps: true });
    const times = records!.map((x) => x.time);
    for (let i = 1; i < times.length; i++) assert.ok(times[i - 1]! <= times[i]!, `time ${i} goes back`);
    // Interleaved as produced: stderr records are spread through the log, not all after stdout.
    const firstOut = records!.findIndex((x) => x.stream === 'stdout');
    const lastOut = records!.findLastIndex((x) => x.stream === 'stdout');
    const errInside = records!.filter((x, i) => x.stream === 'stderr' && i > firstOut && i < lastOut).length;
    assert.ok(errInside > lines / 8 / 2, `only ${errInside} stderr records among the stdout ones`);
    assert.ok(!records!.some((x) => x.marker), 'nothing was lost');
    // The CLI reads the same log: --tail and the JSON form.
    const tail = await ctl('container', 'logs', '--tail', '2', sb, 'big');
    assert.equal(tail.code, 0, tail.stderr);
    // The last two lines of the log, whichever stream each is on (as docker logs --tail).
    const last = records!.slice(-2);
    const of = (stream: string) =>
      Buffer.concat(
        last.filter((x) => x.stream === stream).map((x) => Buffer.from(x.data, 'base64')),
      ).toString();
    assert.equal(tail.stdout, of('stdout'));
    assert.equal(tail.stderr, of('stderr'));
    assert.equal(last.length, 2);
    const json = await ctl('--json', 'container', 'logs', '--tail', '1', sb, 'big');
    const parsed = JSON.parse(json.stdout) as {
      complete: boolean;
      records: { stream: string; text: string }[];
    };
    assert.equal(parsed.complete, true);
    assert.equal(parsed.records.length, 1);
  });

  it('says on stderr that the output of a running process is partial, and honours --json', async () => {
    await runContainer('slow', ['sh', '-c', 'echo first; sleep 100000']);
    await until('first line logged', 60_000, async () => ((await logBytes('slow')) > 0 ? true : undefined));
    const r = await ctl('container', 'logs', sb, 'slow');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'first\n');
    assert.match(r.stderr, /partial/);
    const exec = await ctl('exec', 'output', sb, 'slow', '-');
    assert.match(exec.stderr, /partial/);
    const j = await ctl('--json', 'exec', 'output', sb, 'slow', '-');
    const parsed = JSON.parse(j.stdout) as { complete: boolean; records: { text: string }[] };
    assert.equal(parsed.complete, false);
    assert.deepEqual(
      parsed.records.map((x) => x.text),
      ['first\n'],
    );
  });

  it('after kill -9 of the daemon mid-write and a restart, has every byte once', async () => {
    const n = 3000;
    await runContainer('steady', [
      'sh',
      '-c',
      `i=0; while [ $i -lt ${n} ]; do echo line $i; i=$((i+1)); usleep 5000; done`,
    ]);
    await until('some lines logged', 60_000, async () =>
      (await logBytes('steady')) > 2000 ? true : undefined,
    );
    await stopDaemon('SIGKILL');
    // Down for a while: the guest buffers what the container writes meanwhile.
    await new Promise((r) => setTimeout(r, 5000));
    await startDaemon('--log-max-size', '1m', '--log-max-files', '3');
    await until('steady exited', BOOT_MS, async () =>
      (await call<{ state: string }>('container.state', { sandboxId: sb, id: 'steady' })).state === 'stopped'
        ? true
        : undefined,
    );
    const r = await output('steady');
    assert.equal(r.complete, true);
    const expected = Array.from({ length: n }, (_, i) => `line ${i}\n`).join('');
    const got = Buffer.from(r.stdout, 'base64').toString();
    assert.equal(got.length, expected.length, 'no byte missing, none twice');
    assert.equal(got, expected);
  });

  it('rotates under 1 MiB × 3 with disk use bounded, and logs -f across rotations misses nothing', async () => {
    const lines = 40_000; // ~4 MiB of stdout: four rotations and more
    const expected = expectedOutput(lines);
    await call('container.create', {
      sandboxId: sb,
      id: 'rot',
      bundle: await bundle('rot', awkWriter(lines)),
    });
    const follower = spawn(
      process.execPath,
      [CLI, '--socket', socket, 'container', 'logs', '-f', sb, 'rot'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    follower.stdout.on('data', (d: Buffer) => out.push(d));
    follower.stderr.on('data', (d: Buffer) => err.push(d));
    // Sloppy on purpose: the follower subscribes while the container starts.
    await call('container.start', { sandboxId: sb, id: 'rot' });
    const code = await exited(follower);
    assert.equal(code, 0, Buffer.concat(err).toString());
    assert.equal(sha(Buffer.concat(out)), sha(expected.stdout), 'stdout followed whole');
    assert.equal(sha(Buffer.concat(err)), sha(expected.stderr), 'stderr followed whole');
    const files = (await readdir(join(logsDir('rot'), 'init'))).filter((f) => f.endsWith('.log'));
    assert.equal(files.length, 3, files.join(' '));
    for (const f of files) assert.ok((await stat(join(logsDir('rot'), 'init', f))).size <= 1024 * 1024);
  });

  it('keeps the log when a delete is refused and removes it with the container', async () => {
    assert.ok(await exists(logsDir('slow')));
    const refused = await ctl('container', 'delete', sb, 'slow');
    assert.notEqual(refused.code, 0, 'a running container is not deleted without --force');
    assert.ok(await exists(join(logsDir('slow'), 'init', '1.log')), 'a failed delete removes nothing');
    assert.ok(await exists(logsDir('big')));
    await call('container.delete', { sandboxId: sb, id: 'big' });
    await until('big log removed', 30_000, async () => ((await exists(logsDir('big'))) ? undefined : true));
  });

  it('after kill -9 of QEMU mid-write, logs keep everything written before and the container reads lost', async () => {
    await runContainer('doomed', ['sh', '-c', 'i=0; while :; do echo tick $i; i=$((i+1)); done']);
    await until('ticks logged', 60_000, async () =>
      (await logBytes('doomed')) > 200_000 ? true : undefined,
    );
    const [pid] = await qemuPidsUsing(dir);
    assert.ok(pid, 'the QEMU of the sandbox');
    process.kill(pid, 'SIGKILL');
    await until('container lost', 120_000, async () => {
      const c = await call<{ state: string }>('container.state', { sandboxId: sb, id: 'doomed' });
      return c.state === 'stopped' || c.state === 'lost' || c.state === 'failed' ? c.state : undefined;
    });
    const r = await output('doomed', { timeoutMs: 1000 });
    assert.equal(r.complete, true, 'the log says nothing more will come');
    const text = Buffer.from(r.stdout, 'base64').toString();
    const got = text.split('\n').filter((l) => l.length > 0);
    assert.ok(got.length > 1000, `${got.length} lines`);
    // Every line from the first on, in order; at most the last one cut where the VM died.
    const whole = text.endsWith('\n') ? got : got.slice(0, -1);
    for (const [i, l] of whole.entries()) assert.equal(l, `tick ${i}`);
    const logged = await readFile(join(logsDir('doomed'), 'init', '1.log'), 'utf8').catch(() => '');
    assert.ok(logged.length > 0 || (await logBytes('doomed')) > 0);
  });
});
