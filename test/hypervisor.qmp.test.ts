// The QMP client against a real, stopped QEMU (-S, no kernel): negotiation, commands, events, deadlines, quit.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { firstValueFrom, take, toArray } from 'rxjs';
import { HypervisorError, Timeout } from '../src/errors/index.js';
import { isProcessAlive, QmpClient } from '../src/hypervisor/index.js';

/** Starts `qemu -S` daemonized with a QMP socket in `dir`; resolves with its pid. */
async function startStoppedQemu(dir: string): Promise<number> {
  const args = [
    '-S',
    '-machine',
    'q35',
    '-accel',
    'tcg',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-qmp',
    `unix:${join(dir, 'qmp.sock')},server=on,wait=off`,
    '-pidfile',
    join(dir, 'qemu.pid'),
    '-daemonize',
  ];
  await new Promise<void>((resolve, reject) => {
    const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`qemu exited ${code}`))));
  });
  return Number((await readFile(join(dir, 'qemu.pid'), 'utf8')).trim());
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!(await isProcessAlive(pid))) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

describe('QMP client against a stopped QEMU', () => {
  let dir: string;
  let pid: number;
  let qmp: QmpClient;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-qmp-'));
    pid = await startStoppedQemu(dir);
    qmp = await QmpClient.connect(join(dir, 'qmp.sock'));
  });

  after(async () => {
    qmp?.close();
    if (pid && (await isProcessAlive(pid))) {
      process.kill(pid, 'SIGKILL');
      await waitGone(pid, 5_000);
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('negotiates capabilities after reading the greeting', () => {
    const greeting = qmp.greeting as { QMP: { version: { qemu: { major: number } } } };
    assert.ok(greeting.QMP.version.qemu.major >= 7);
    assert.equal(qmp.isClosed, false);
  });

  it('answers query-status with the prelaunch state', async () => {
    const status = await qmp.execute<{ status: string; running: boolean }>('query-status');
    assert.equal(status.running, false);
    assert.equal(status.status, 'prelaunch');
  });

  it('matches concurrent answers to their requests by id', async () => {
    const [status, cpus, name] = await Promise.all([
      qmp.execute<{ running: boolean }>('query-status'),
      qmp.execute<unknown[]>('query-cpus-fast'),
      qmp.execute<Record<string, unknown>>('query-name'),
    ]);
    assert.equal(status.running, false);
    assert.ok(Array.isArray(cpus) && cpus.length === 1);
    assert.equal(typeof name, 'object');
  });

  it('turns a QMP error into a HypervisorError naming the command and the QMP class', async () => {
    await assert.rejects(qmp.execute('no-such-command'), (err: unknown) => {
      assert.ok(err instanceof HypervisorError);
      assert.match(err.message, /^qmp no-such-command: /);
      assert.equal(err.details.qmpClass, 'CommandNotFound');
      return true;
    });
  });

  it('emits RESUME on cont and STOP on stop as events', async () => {
    const seen = firstValueFrom(qmp.events.pipe(take(2), toArray()));
    await qmp.execute('cont');
    await qmp.execute('stop');
    const events = await seen;
    assert.deepEqual(
      events.map((event) => event.event),
      ['RESUME', 'STOP'],
    );
    assert.ok(events.every((event) => event.timestampUs > 0));
    const status = await qmp.execute<{ status: string }>('query-status');
    assert.equal(status.status, 'paused');
  });

  it('reconnects to the same QEMU after the first session ends', async () => {
    qmp.close();
    await qmp.closed;
    await assert.rejects(qmp.execute('query-status'), HypervisorError);
    qmp = await QmpClient.connect(join(dir, 'qmp.sock'));
    const status = await qmp.execute<{ status: string }>('query-status');
    assert.equal(status.status, 'paused');
  });

  it('quits QEMU: SHUTDOWN arrives, the session closes and the process and pidfile are gone', async () => {
    const shutdown = firstValueFrom(qmp.events);
    await qmp.execute('quit');
    const event = await shutdown;
    assert.equal(event.event, 'SHUTDOWN');
    assert.equal(event.data.reason, 'host-qmp-quit');
    await qmp.closed;
    assert.equal(await waitGone(pid, 5_000), true);
    const left = (await readdir(dir)).filter((name) => name !== 'qmp.sock');
    assert.deepEqual(left, []);
  });
});

describe('QMP client deadlines', () => {
  let dir: string;
  let server: Server;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-qmp-mute-'));
  });

  after(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('times out a command QEMU never answers, and the connect of a mute peer', async () => {
    const path = join(dir, 'mute.sock');
    // A peer that greets and accepts capabilities, then never answers again: a wedged QEMU.
    server = createServer((socket) => {
      socket.write(
        '{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": []}}\r\n',
      );
      socket.on('data', (chunk) => {
        if (chunk.toString().includes('qmp_capabilities')) {
          const id = JSON.parse(chunk.toString()).id as string;
          socket.write(`{"return": {}, "id": "${id}"}\r\n`);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    const client = await QmpClient.connect(path);
    const started = Date.now();
    await assert.rejects(client.execute('query-status', undefined, { timeoutMs: 200 }), (err: unknown) => {
      assert.ok(err instanceof Timeout);
      assert.match(err.message, /qmp query-status timed out after 200 ms/);
      return true;
    });
    assert.ok(Date.now() - started < 2_000);
    client.close();

    const silentPath = join(dir, 'silent.sock');
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(silentPath, resolve));
    try {
      await assert.rejects(QmpClient.connect(silentPath, { timeoutMs: 200 }), Timeout);
    } finally {
      silent.close();
    }
  });

  it('refuses to connect where nothing listens', async () => {
    await assert.rejects(QmpClient.connect(join(dir, 'nothing.sock')), HypervisorError);
  });
});
