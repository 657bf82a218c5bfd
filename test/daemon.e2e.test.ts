// End to end with the real daemon binary, real socket, real QEMU (TCG) VMs: lifecycle, bad input, kill -9 and recovery.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mountsUnder, unmountAllUnder } from '../src/actors/index.js';
import { type ApiClient, connectApi, type RpcCallError } from '../src/api/index.js';
import type { EventEnvelope } from '../src/events/index.js';
import { rawClient } from './support/api-harness.js';
import { DAEMON, exited, runToEnd, sandboxctl, spawnUntil } from './support/processes.js';

const BOOT_MS = 240_000;

/** Pids of processes whose command line mentions `needle` (our QEMUs live under the temp dir). */
async function pidsMentioning(needle: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = (await readFile(`/proc/${name}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      if (cmd.includes(needle) && cmd.includes('qemu-system')) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface View {
  id: string;
  state: string;
  pid?: number;
}

describe('sandboxd end to end (real daemon, real VMs)', { timeout: 1_200_000 }, () => {
  let dir: string;
  let stateDir: string;
  let socket: string;
  let bundle: string;
  let daemon: ChildProcess | undefined;
  let api: ApiClient | undefined;
  const pidsBefore = new Map<string, number>();
  let afterRestart = new Map<string, View>();

  const startDaemon = async () => {
    const d = await spawnUntil(
      DAEMON,
      ['--state-dir', stateDir, '--socket', socket, '--log-level', 'info'],
      /"msg":"ready"/,
      {
        timeoutMs: BOOT_MS,
      },
    );
    daemon = d.child;
    api = await connectApi(socket);
    return d;
  };
  const killDaemon9 = async () => {
    api?.close();
    api = undefined;
    daemon!.kill('SIGKILL');
    await exited(daemon!);
  };
  const ctl = (...args: string[]) => sandboxctl(['--socket', socket, ...args], { timeoutMs: BOOT_MS });
  const call = <T>(method: string, params?: unknown) => api!.call<T>(method, params);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-e2e-'));
    stateDir = join(dir, 'state');
    socket = join(dir, 'sandboxd.sock');
    bundle = join(dir, 'bundle');
    const b = await sandboxctl(['bundle', bundle, '--', 'sh', '-c', 'echo hello-e2e; exit 3']);
    assert.equal(b.code, 0, b.stderr);
    await startDaemon();
  });

  after(async () => {
    api?.close();
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM');
      await exited(daemon);
    }
    // Last resort: our own QEMUs (their command lines name our temp dir).
    for (const pid of await pidsMentioning(dir)) process.kill(pid, 'SIGKILL');
    // Never remove through a bind a failed test left behind.
    await unmountAllUnder(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('runs a container through sandboxctl run --rm: output streamed, exit code returned, sandbox gone', async () => {
    const r = await ctl('run', '--rm', '--name', 'runner', bundle);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, /hello-e2e/);
    const list = JSON.parse((await ctl('--json', 'sandbox', 'ls')).stdout) as View[];
    assert.ok(!list.some((s) => s.id === 'runner'));
    assert.deepEqual(await pidsMentioning(join(stateDir, 'sandboxes', 'runner')), []);
  });

  it('runs an interactive container: sandboxctl run -i -t --rm feeds stdin to EOF and gives it a terminal', async () => {
    const r = await sandboxctl(
      [
        '--socket',
        socket,
        'run',
        '-i',
        '-t',
        '--rm',
        '-q',
        '--name',
        'inter',
        bundle,
        '--',
        'sh',
        '-c',
        'stty size; cat; exit 4',
      ],
      { timeoutMs: BOOT_MS, input: 'typed-line\n' },
    );
    assert.equal(r.code, 4, r.stderr);
    // On a terminal lines end in \r\n. The pty echoes what was typed as soon as it arrives (before or after
    // stty's line), and cat repeats it once it reads it.
    assert.match(r.stdout, /(^|\n)24 80\r\n/);
    assert.equal(r.stdout.replace('24 80\r\n', ''), 'typed-line\r\ntyped-line\r\n');
    const list = JSON.parse((await ctl('--json', 'sandbox', 'ls')).stdout) as View[];
    assert.ok(!list.some((s) => s.id === 'inter'));
  });

  it('drives three sandboxes through raw JSON-RPC: a batch of starts, a container mid-exec, one paused', async () => {
    const raw = await rawClient(socket);
    const created = (await raw.request(
      ['a', 'b', 'c'].map((id, i) => ({ jsonrpc: '2.0', id: i, method: 'sandbox.create', params: { id } })),
    )) as { result?: View }[];
    assert.ok(created.every((r) => r.result?.state === 'created'));
    raw.send(
      `${JSON.stringify(['a', 'b', 'c'].map((id, i) => ({ jsonrpc: '2.0', id: 10 + i, method: 'sandbox.start', params: { id } })))}\n`,
    );
    const started = (await raw.next(BOOT_MS * 2)) as { id: number; result?: View; error?: unknown }[];
    assert.equal(started.length, 3);
    for (const r of started) assert.equal(r.result?.state, 'running', JSON.stringify(r));
    raw.close();

    await call('container.create', {
      sandboxId: 'a',
      id: 'main',
      bundle,
      process: { args: ['sleep', '600'] },
    });
    await call('container.start', { sandboxId: 'a', id: 'main' });
    await call('exec.start', {
      sandboxId: 'a',
      containerId: 'main',
      execId: 'e1',
      process: { args: ['sh', '-c', 'echo exec-out; sleep 600'] },
    });
    await until(
      'exec output',
      async () => {
        const o = await call<{ stdout: string }>('exec.output', {
          sandboxId: 'a',
          containerId: 'main',
          execId: 'e1',
          stream: 'stdout',
          timeoutMs: 1000,
        });
        return Buffer.from(o.stdout, 'base64').toString().includes('exec-out') ? true : undefined;
      },
      60_000,
    );
    await call('sandbox.pause', { id: 'b' });

    // Two conflicting creates of one container: exactly one wins, the other is told why.
    const both = await Promise.allSettled([
      call('container.create', { sandboxId: 'c', id: 'dup', bundle }),
      call('container.create', { sandboxId: 'c', id: 'dup', bundle }),
    ]);
    assert.equal(both.filter((r) => r.status === 'fulfilled').length, 1);
    const lost = (both.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as RpcCallError;
    assert.ok(
      ['AlreadyExists', 'InvalidState', 'Conflict'].includes(String(lost.data.code)),
      String(lost.data.code),
    );

    for (const s of await call<View[]>('sandbox.list')) if (s.pid) pidsBefore.set(s.id, s.pid);
    assert.equal(pidsBefore.size, 3);
  });

  it('attaches to a process with sandboxctl exec run: stdin to EOF, output, exit code, a sized terminal', async () => {
    const piped = await sandboxctl(
      [
        '--socket',
        socket,
        'exec',
        'run',
        '-i',
        'a',
        'main',
        '--',
        'sh',
        '-c',
        'cat; echo err-line >&2; exit 7',
      ],
      { timeoutMs: 60_000, input: 'piped-in\nsecond line\n' },
    );
    assert.equal(piped.code, 7, piped.stderr);
    assert.equal(piped.stdout, 'piped-in\nsecond line\n');
    assert.match(piped.stderr, /err-line/);

    const terminal = await ctl(
      'exec',
      'run',
      '-t',
      '--id',
      'tty1',
      'a',
      'main',
      '--',
      'sh',
      '-c',
      'tty; stty size',
    );
    assert.equal(terminal.code, 0, terminal.stderr);
    assert.match(
      terminal.stdout,
      /^\/dev\/pts\/\d+\r\n24 80\r\n$/,
      'a terminal starts at 24×80 when ours has no size',
    );
    const state = await call<{ state: string; exit?: { exitCode: number } }>('exec.state', {
      sandboxId: 'a',
      containerId: 'main',
      execId: 'tty1',
    });
    assert.equal(state.exit?.exitCode, 0, JSON.stringify(state));

    const missing = await ctl('exec', 'run', 'a', 'nope', '--', 'true');
    assert.equal(missing.code, 3, 'not found');
    assert.match(missing.stderr, /nope/);
  });

  it('refuses bad input with clear errors and leaves the log unchanged', async () => {
    const before = (await call<{ events: { lastSeq: number } }>('daemon.info')).events.lastSeq;
    const raw = await rawClient(socket);
    raw.send('{"jsonrpc":"2.0","id":1,"method":\n');
    assert.equal(((await raw.next()) as { error: { code: number } }).error.code, -32700);
    const unknown = (await raw.request({
      jsonrpc: '2.0',
      id: 2,
      method: 'sandbox.teleport',
      params: { id: 'a' },
    })) as {
      error: { code: number };
    };
    assert.equal(unknown.error.code, -32601);
    const wrongType = (await raw.request({
      jsonrpc: '2.0',
      id: 3,
      method: 'sandbox.stop',
      params: { id: 42 },
    })) as {
      error: { code: number; data: { field: string } };
    };
    assert.equal(wrongType.error.code, -32602);
    assert.equal(wrongType.error.data.field, 'id');
    const badId = (await raw.request({
      jsonrpc: '2.0',
      id: 4,
      method: 'sandbox.create',
      params: { id: '-x/../y' },
    })) as {
      error: { data: { field: string } };
    };
    assert.equal(badId.error.data.field, 'id');
    const traversal = (await raw.request({
      jsonrpc: '2.0',
      id: 5,
      method: 'container.create',
      params: { sandboxId: 'c', id: 'evil', bundle: `${bundle}/../../etc` },
    })) as { error: { data: { field: string } } };
    assert.equal(traversal.error.data.field, 'bundle');
    raw.send(
      `${JSON.stringify({ jsonrpc: '2.0', id: 6, method: 'sandbox.create', params: { id: 'big', x: 'y'.repeat(1_100_000) } })}\n`,
    );
    assert.equal(((await raw.next()) as { error: { code: number } }).error.code, -32600);
    const invalidState = (await raw.request({
      jsonrpc: '2.0',
      id: 7,
      method: 'sandbox.resume',
      params: { id: 'a' },
    })) as {
      error: { data: { code: string } };
    };
    assert.equal(invalidState.error.data.code, 'InvalidState');
    raw.close();

    const second = await runToEnd(
      DAEMON,
      ['--state-dir', stateDir, '--socket', join(dir, 'second.sock')],
      60_000,
    );
    assert.equal(second.code, 10);
    assert.match(second.output, /state dir .* is in use by another sandboxd/);
    const after = (await call<{ events: { lastSeq: number } }>('daemon.info')).events.lastSeq;
    assert.equal(after, before, 'no bad request wrote an event');
  });

  it('binds a host directory into a container (the bind will have to outlive a kill -9)', async () => {
    const hostDir = join(dir, 'hostvol');
    await mkdir(hostDir);
    await writeFile(join(hostDir, 'keep.txt'), 'kept\n');
    await call('container.create', {
      sandboxId: 'c',
      id: 'vol',
      bundle,
      process: { args: ['sleep', '600'] },
      mounts: [{ source: hostDir, destination: '/hostvol' }],
    });
    await call('container.start', { sandboxId: 'c', id: 'vol' });
    // Every container's rootfs is bound into its share as well; the volume is the one below .volumes/.
    assert.equal((await mountsUnder(stateDir)).filter((m) => m.includes('/.volumes/')).length, 1);
  });

  it('recovers after kill -9: running sandboxes reattached to the same QEMU, exec output still there, verify clean', async () => {
    await killDaemon9();
    for (const [id, pid] of pidsBefore) assert.ok(alive(pid), `QEMU of ${id} outlived the daemon`);
    await startDaemon();
    const list = new Map((await call<View[]>('sandbox.list')).map((s) => [s.id, s]));
    afterRestart = list;
    for (const id of ['a', 'c']) {
      assert.equal(list.get(id)?.state, 'running', id);
      assert.equal(list.get(id)?.pid, pidsBefore.get(id), `${id} reattached to the same QEMU`);
    }
    const container = await call<{ state: string }>('container.state', { sandboxId: 'a', id: 'main' });
    assert.equal(container.state, 'running');
    const exec = await call<{ state: string }>('exec.state', {
      sandboxId: 'a',
      containerId: 'main',
      execId: 'e1',
    });
    assert.equal(exec.state, 'running');
    const out = await call<{ stdout: string }>('exec.output', {
      sandboxId: 'a',
      containerId: 'main',
      execId: 'e1',
      stream: 'stdout',
      timeoutMs: 2000,
    });
    assert.match(Buffer.from(out.stdout, 'base64').toString(), /exec-out/);
    const verify = await ctl('events', 'verify');
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it('keeps a paused sandbox paused on the same QEMU across kill -9, and resumes it', async () => {
    const b = afterRestart.get('b');
    assert.equal(b?.state, 'paused');
    assert.equal(b?.pid, pidsBefore.get('b'));
    const resumed = await call<View>('sandbox.resume', { id: 'b' });
    assert.equal(resumed.state, 'running');
    assert.equal(resumed.pid, pidsBefore.get('b'));
  });

  it('creates and runs new containers after the restart, in a reattached and in a resumed sandbox', async () => {
    for (const sandboxId of ['b', 'c']) {
      await call('container.create', { sandboxId, id: 'after', bundle });
      await call('container.start', { sandboxId, id: 'after' });
      const status = await call<{ exitCode: number }>('container.wait', {
        sandboxId,
        id: 'after',
        timeoutMs: 120_000,
      });
      assert.equal(status.exitCode, 3, sandboxId);
    }
  });

  it('serves the bound host directory after the restart, and unbinds it on delete leaving the host files', async () => {
    await call('exec.start', {
      sandboxId: 'c',
      containerId: 'vol',
      execId: 'look',
      process: { args: ['cat', '/hostvol/keep.txt'] },
    });
    assert.equal(
      (await call<{ exitCode: number }>('exec.wait', { sandboxId: 'c', containerId: 'vol', execId: 'look' }))
        .exitCode,
      0,
    );
    const out = await call<{ stdout: string }>('exec.output', {
      sandboxId: 'c',
      containerId: 'vol',
      execId: 'look',
      stream: 'stdout',
      timeoutMs: 2000,
    });
    assert.equal(Buffer.from(out.stdout, 'base64').toString(), 'kept\n');
    await call('container.delete', { sandboxId: 'c', id: 'vol', force: true });
    const shared = join(stateDir, 'sandboxes', 'c', 'shared');
    assert.deepEqual(await mountsUnder(join(shared, '.volumes', 'vol')), []);
    assert.deepEqual(await mountsUnder(join(shared, 'vol')), [], 'the rootfs bind is gone too');
    assert.equal(await readFile(join(dir, 'hostvol', 'keep.txt'), 'utf8'), 'kept\n');
  });

  it('settles a sandbox.start interrupted by kill -9 and leaves no orphaned QEMU', async () => {
    await call('sandbox.create', { id: 'd' });
    const raw = await rawClient(socket);
    raw.send(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'sandbox.start', params: { id: 'd' } })}\n`);
    // Kill the daemon once the VM is launched but before the agent answered: the middle of the start.
    await until(
      'VmLaunched of d',
      async () => {
        const page = await call<{ events: EventEnvelope[] }>('events.read', { stream: 'sandbox-d' });
        return page.events.some((e) => e.type === 'VmLaunched') ? true : undefined;
      },
      BOOT_MS,
    );
    raw.close();
    await killDaemon9();
    await startDaemon();
    const settled = await until(
      'd settled',
      async () => {
        const s = await call<View>('sandbox.status', { id: 'd' });
        return ['running', 'failed', 'stopped', 'lost'].includes(s.state) ? s : undefined;
      },
      BOOT_MS,
    );
    const qemus = await pidsMentioning(join(stateDir, 'sandboxes', 'd'));
    if (settled.state === 'running') assert.deepEqual(qemus, [settled.pid]);
    else assert.deepEqual(qemus, [], `no QEMU left for a ${settled.state} sandbox`);
    const verify = await ctl('events', 'verify');
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it('deletes everything, stops on SIGTERM with exit 0, and leaves no QEMU behind', async () => {
    for (const s of await call<View[]>('sandbox.list'))
      await call('sandbox.delete', { id: s.id, force: true });
    assert.deepEqual(await call('sandbox.list'), []);
    api!.close();
    api = undefined;
    daemon!.kill('SIGTERM');
    assert.equal(await exited(daemon!), 0);
    assert.deepEqual(await pidsMentioning(dir), []);
    assert.deepEqual(await mountsUnder(dir), [], 'no bind mount left');
    const left = await readdir(join(stateDir, 'sandboxes')).catch(() => []);
    assert.deepEqual(left, [], 'every sandbox dir removed');
    const offline = await sandboxctl(['--state-dir', stateDir, 'events', 'verify']);
    assert.equal(offline.code, 0, offline.stdout + offline.stderr);
  });
});
