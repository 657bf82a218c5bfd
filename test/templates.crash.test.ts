// A clone started from a VM template while the daemon is killed -9 (real daemon, real QEMU, TCG here): after the
// restart nothing of it runs on the template's identity, no QEMU is orphaned, and `events verify` (whose sandbox
// machine refuses a clone started before its identity was refreshed) accepts the log.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mountsUnder, unmountAllUnder } from '../src/actors/index.js';
import { type ApiClient, connectApi } from '../src/api/index.js';
import type { EventEnvelope } from '../src/events/index.js';
import { rawClient } from './support/api-harness.js';
import { DAEMON, exited, sandboxctl, spawnUntil } from './support/processes.js';
import { qemuPidsUsing, until } from './support/vm.js';

const BOOT_MS = 240_000;
/** Small, so the template boots and saves quickly under TCG (templates.start uses the same shape). */
const shape = { vcpus: 1, maxVcpus: 2, memoryMiB: 256, maxMemoryMiB: 512 } as const;

interface View {
  state: string;
  pid?: number;
  template?: string;
}

describe('a clone from a template when the daemon is killed -9 (real daemon, real QEMU)', {
  timeout: 900_000,
}, () => {
  let dir: string;
  let stateDir: string;
  let socket: string;
  let templatesDir: string;
  let bundle: string;
  let templateId: string;
  let daemon: ChildProcess | undefined;
  let api: ApiClient | undefined;

  const startDaemon = async () => {
    const d = await spawnUntil(
      DAEMON,
      ['--state-dir', stateDir, '--socket', socket, '--templates', '--templates-dir', templatesDir],
      /"msg":"ready"/,
      { timeoutMs: BOOT_MS },
    );
    daemon = d.child;
    api = await connectApi(socket);
  };
  const killDaemon9 = async () => {
    api?.close();
    api = undefined;
    daemon!.kill('SIGKILL');
    await exited(daemon!);
  };
  const call = <T>(method: string, params?: unknown) => api!.call<T>(method, params);
  const ctl = (...args: string[]) => sandboxctl(['--socket', socket, ...args], { timeoutMs: BOOT_MS });
  const eventsOf = async (id: string) =>
    (await call<{ events: EventEnvelope[] }>('events.read', { stream: `sandbox-${id}` })).events;
  const sandboxDir = (id: string) => join(stateDir, 'sandboxes', id);

  /** Asks for the start without waiting for it, and kills the daemon -9 once `reached` holds of the log. */
  async function killDuringStart(
    id: string,
    reached: (events: EventEnvelope[]) => boolean,
  ): Promise<EventEnvelope[]> {
    await call('sandbox.create', { id, config: { ...shape, hostname: id } });
    const raw = await rawClient(socket);
    raw.send(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'sandbox.start', params: { id } })}\n`);
    const seen = await until(`${id}'s start to reach the step`, BOOT_MS, async () => {
      const events = await eventsOf(id);
      return reached(events) ? events : undefined;
    });
    raw.close();
    await killDaemon9();
    return seen;
  }

  async function settled(id: string): Promise<View> {
    return until(`${id} settled after the restart`, BOOT_MS, async () => {
      const view = await call<View>('sandbox.status', { id });
      return ['running', 'failed', 'stopped', 'lost'].includes(view.state) ? view : undefined;
    });
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-tplcrash-'));
    stateDir = join(dir, 'state');
    socket = join(dir, 'sandboxd.sock');
    templatesDir = join(dir, 'templates');
    bundle = join(dir, 'bundle');
    const b = await sandboxctl(['bundle', bundle, '--', 'sleep', '100000']);
    assert.equal(b.code, 0, b.stderr);
    await startDaemon();
    const built = await call<{ template: { id: string } }>('template.build', { ...shape, network: 'none' });
    templateId = built.template.id;
  });

  after(async () => {
    if (api) {
      for (const s of await call<{ id: string }[]>('sandbox.list').catch(() => [])) {
        await call('sandbox.delete', { id: s.id, force: true }).catch(() => undefined);
      }
      api.close();
    }
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      daemon.kill('SIGTERM');
      await exited(daemon);
    }
    const left = await qemuPidsUsing(dir);
    for (const pid of left) process.kill(pid, 'SIGKILL');
    await unmountAllUnder(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    assert.deepEqual(left, [], 'no QEMU left behind');
  });

  it('killed after the restore, before the identity: the restart refreshes it, then runs the clone', async () => {
    const seen = await killDuringStart('a', (events) => events.some((e) => e.type === 'SandboxRestored'));
    const killedAt = Date.now();
    assert.ok(!seen.some((e) => e.type === 'SandboxIdentityRefreshed'), 'killed before the identity step');
    await startDaemon();
    const view = await settled('a');
    assert.equal(view.state, 'running', JSON.stringify(view));
    assert.equal(view.template, templateId);
    const log = await eventsOf('a');
    const types = log.map((e) => e.type);
    const refreshed = log.filter((e) => e.type === 'SandboxIdentityRefreshed');
    assert.equal(refreshed.length, 1, types.join(' '));
    assert.ok(Date.parse(refreshed[0]!.at ?? '') >= killedAt - 1000, 'refreshed by the restarted daemon');
    assert.deepEqual(
      (refreshed[0]!.data as { steps: { step: string }[] }).steps.map((s) => s.step),
      ['reseed', 'clock', 'hostname'],
    );
    assert.ok(types.indexOf('SandboxIdentityRefreshed') < types.indexOf('SandboxStarted'), types.join(' '));
    assert.deepEqual(await qemuPidsUsing(sandboxDir('a')), [view.pid]);
    // The clone works: a container runs and answers an exec.
    await call('container.create', { sandboxId: 'a', id: 'box', bundle });
    await call('container.start', { sandboxId: 'a', id: 'box' });
    const echo = await ctl('exec', 'run', 'a', 'box', '--', 'echo', 'clone-ok');
    assert.equal(echo.code, 0, echo.stderr);
    assert.equal(echo.stdout.trim(), 'clone-ok');
  });

  it('killed while the clone is being launched: it settles with its QEMU kept only if it runs', async () => {
    await killDuringStart('b', (events) => events.some((e) => e.type === 'SandboxStartRequested'));
    await startDaemon();
    const view = await settled('b');
    const qemus = await qemuPidsUsing(sandboxDir('b'));
    if (view.state === 'running') {
      assert.deepEqual(qemus, [view.pid]);
      const types = (await eventsOf('b')).map((e) => e.type);
      if (types.includes('SandboxRestored'))
        assert.ok(types.includes('SandboxIdentityRefreshed'), types.join(' '));
    } else {
      assert.deepEqual(qemus, [], `no QEMU left for a ${view.state} sandbox`);
    }
  });

  it('the log verifies, and delete leaves only the template', async () => {
    const verify = await ctl('events', 'verify');
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    for (const id of ['a', 'b']) await call('sandbox.delete', { id, force: true });
    assert.deepEqual(await qemuPidsUsing(dir), []);
    assert.deepEqual(await mountsUnder(dir), []);
    assert.deepEqual(await readdir(join(stateDir, 'sandboxes')).catch(() => []), []);
    assert.deepEqual(await readdir(templatesDir), [templateId]);
  });
});
