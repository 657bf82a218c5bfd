// Ids reused after delete with the real daemon and real VMs (issue 14): the same container id three times in
// one sandbox, the same sandbox id three times with a kill -9 of the daemon between a delete and a re-create;
// the log keeps every life apart and verifies.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { unmountAllUnder } from '../src/actors/index.js';
import { type ApiClient, connectApi } from '../src/api/index.js';
import { DAEMON, exited, sandboxctl, spawnUntil } from './support/processes.js';

const BOOT_MS = 240_000;

async function qemuPidsMentioning(needle: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(needle) && cmd.startsWith('qemu-system')) out.push(Number(name));
  }
  return out;
}

interface View {
  state: string;
  incarnation: number;
}

describe('ids reused after delete (real daemon, real VMs)', { timeout: 900_000 }, () => {
  let dir: string;
  let stateDir: string;
  let socket: string;
  let bundle: string;
  let daemon: ChildProcess | undefined;
  let api: ApiClient | undefined;

  const startDaemon = async () => {
    const d = await spawnUntil(DAEMON, ['--state-dir', stateDir, '--socket', socket], /"msg":"ready"/, {
      timeoutMs: BOOT_MS,
    });
    daemon = d.child;
    api = await connectApi(socket);
  };
  const call = <T>(method: string, params?: unknown) => api!.call<T>(method, params);

  /** Runs `echo life-N` as container `c` of `sandboxId` to its end; returns its view at create and its output. */
  const runOnce = async (sandboxId: string, life: number) => {
    const view = await call<View>('container.create', {
      sandboxId,
      id: 'c',
      bundle,
      process: { args: ['sh', '-c', `echo life-${life}`] },
    });
    await call('container.start', { sandboxId, id: 'c' });
    const exit = await call<{ exitCode: number }>('container.wait', { sandboxId, id: 'c' });
    const out = await call<{ stdout?: string }>('exec.output', { sandboxId, containerId: 'c', execId: '' });
    await call('container.delete', { sandboxId, id: 'c' });
    return { view, exit, stdout: Buffer.from(out.stdout ?? '', 'base64').toString() };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-reuse-'));
    stateDir = join(dir, 'state');
    socket = join(dir, 'sandboxd.sock');
    bundle = join(dir, 'bundle');
    const b = await sandboxctl(['bundle', bundle, '--', 'true']);
    assert.equal(b.code, 0, b.stderr);
    await startDaemon();
  });

  after(async () => {
    api?.close();
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM');
      await exited(daemon);
    }
    for (const pid of await qemuPidsMentioning(dir)) process.kill(pid, 'SIGKILL');
    await unmountAllUnder(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('runs the same container id three times in one sandbox, each its own life', {
    timeout: BOOT_MS * 2,
  }, async () => {
    await call('sandbox.create', { id: 'r1', config: {} });
    await call('sandbox.start', { id: 'r1' });
    for (const life of [1, 2, 3]) {
      const r = await runOnce('r1', life);
      assert.equal(r.view.incarnation, life);
      assert.equal(r.exit.exitCode, 0);
      assert.match(r.stdout, new RegExp(`life-${life}`));
    }
  });

  it('creates the sandbox id again across a kill -9 of the daemon between the delete and the re-create', {
    timeout: BOOT_MS * 2,
  }, async () => {
    await call('sandbox.delete', { id: 'r1', force: true });
    api?.close();
    daemon!.kill('SIGKILL');
    await exited(daemon!);
    await startDaemon();
    await assert.rejects(call('sandbox.status', { id: 'r1' }), (err: { data?: { code?: string } }) => {
      return err.data?.code === 'NotFound';
    });
    const second = await call<View>('sandbox.create', { id: 'r1', config: {} });
    assert.equal(second.incarnation, 2);
    await call('sandbox.start', { id: 'r1' });
    // A new life of the sandbox starts its containers' lives again at 1.
    const r = await runOnce('r1', 1);
    assert.equal(r.view.incarnation, 1);
    assert.match(r.stdout, /life-1/);
    await call('sandbox.delete', { id: 'r1', force: true });
    const third = await call<View>('sandbox.create', { id: 'r1', config: {} });
    assert.equal(third.incarnation, 3);
    await call('sandbox.delete', { id: 'r1' });
    assert.deepEqual(await qemuPidsMentioning(dir), [], 'no QEMU left');
  });

  it('keeps every life in the log, apart, and the log verifies', async () => {
    const ls = await sandboxctl(['--socket', socket, '--json', 'events', 'ls']);
    assert.equal(ls.code, 0, ls.stderr);
    const streams = new Set((JSON.parse(ls.stdout) as { stream: string }[]).map((e) => e.stream));
    for (const s of [
      'sandbox-r1',
      'sandbox-r1~2',
      'sandbox-r1~3',
      'container-r1-c',
      'container-r1-c~2',
      'container-r1-c~3',
      'container-r1~2-c',
    ]) {
      assert.ok(streams.has(s), `${s} in ${[...streams].join(' ')}`);
    }
    const verify = await sandboxctl(['--socket', socket, 'events', 'verify']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });
});
