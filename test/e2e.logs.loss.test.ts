// Host logs when the guest had to drop output, with a real daemon and VM: a guest buffer made tiny
// (SANDBOXD_GUEST_OUTPUT_BUFFER), a container that writes far more than it while the daemon is killed -9 and stays
// down; after the restart the loss is an event of the container's stream and a marker line in `logs`, the bytes before
// the gap are there once, the bytes after it follow. Then a sandbox delete with several containers and execs removes
// every log file and dir.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { unmountAllUnder } from '../src/actors/index.js';
import { type ApiClient, connectApi } from '../src/api/index.js';
import { DAEMON, exited, sandboxctl, spawnUntil } from './support/processes.js';
import { exists, qemuPidsUsing, until } from './support/vm.js';

const BOOT_MS = 240_000;
const GUEST_BUFFER = 4096;

interface Rec {
  time: string;
  stream: 'stdout' | 'stderr';
  data: string;
  partial?: boolean;
  marker?: boolean;
}

describe('host logs when the guest dropped output', { timeout: 1_200_000 }, () => {
  let dir: string;
  let stateDir: string;
  let socket: string;
  let daemon: ChildProcess | undefined;
  let api: ApiClient | undefined;
  const sb = 'loss';
  const ctl = (...args: string[]) => sandboxctl(['--socket', socket, ...args], { timeoutMs: BOOT_MS });
  const call = <T>(method: string, params?: unknown) => api!.call<T>(method, params);
  const sandboxDir = () => join(stateDir, 'sandboxes', sb);
  const logsDir = () => join(sandboxDir(), 'logs');

  const startDaemon = async () => {
    const d = await spawnUntil(
      DAEMON,
      ['--state-dir', stateDir, '--socket', socket, '--log-level', 'info'],
      /"msg":"ready"/,
      { timeoutMs: BOOT_MS, env: { SANDBOXD_GUEST_OUTPUT_BUFFER: String(GUEST_BUFFER) } },
    );
    daemon = d.child;
    api = await connectApi(socket);
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
  const logBytes = async (sub: string) => {
    let total = 0;
    const d = join(logsDir(), sub);
    for (const f of await readdir(d).catch(() => [] as string[])) {
      if (f.endsWith('.log')) total += (await stat(join(d, f))).size;
    }
    return total;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-e2e-loss-'));
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

  it('records what the guest dropped while the daemon was down as an event and a marker, nothing twice', async () => {
    // 100 bursts of 100 lines, 0.2 s apart (~20 s of writing; a fork per burst, not per line: TCG is slow).
    const n = 10_000;
    const expected = Array.from({ length: n }, (_, i) => `line ${i}\n`).join('');
    await runContainer('lossy', [
      'awk',
      'BEGIN { for (b = 0; b < 100; b++) { for (j = 0; j < 100; j++) printf "line %d\\n", b * 100 + j; fflush(); system("usleep 200000") } }',
    ]);
    await until('some lines logged', 60_000, async () =>
      (await logBytes('lossy/init')) > 500 ? true : undefined,
    );
    api?.close();
    api = undefined;
    daemon!.kill('SIGKILL');
    await exited(daemon!);
    // The scenario, not a synchronisation: down long enough for the writer to overflow a 4 KiB buffer many times.
    await new Promise((r) => setTimeout(r, 8000));
    await startDaemon();
    await until('lossy exited', BOOT_MS, async () =>
      (await call<{ state: string }>('container.state', { sandboxId: sb, id: 'lossy' })).state === 'stopped'
        ? true
        : undefined,
    );

    // The event, in the container's stream.
    const show = await ctl('--json', 'events', 'show', `container-${sb}-lossy`);
    assert.equal(show.code, 0, show.stderr);
    const steps = JSON.parse(show.stdout) as {
      event: { type: string; data: { stream: string; bytes: number; offset: number } };
      refused?: string;
    }[];
    const drops = steps.filter((s) => s.event.type === 'ContainerOutputDropped');
    assert.ok(drops.length >= 1, 'the loss is an event');
    for (const d of drops) {
      assert.equal(d.event.data.stream, 'stdout');
      assert.ok(d.event.data.bytes > 0);
      assert.equal(d.refused, undefined);
    }

    // The log: the bytes before each gap once, a marker saying how many are missing, the bytes after.
    const r = await call<{ complete: boolean; records: Rec[] }>('exec.output', {
      sandboxId: sb,
      containerId: 'lossy',
      execId: '',
      timestamps: true,
      timeoutMs: 60_000,
    });
    assert.equal(r.complete, true);
    const markers = r.records.filter((x) => x.marker);
    assert.equal(markers.length, drops.length, 'one marker per recorded loss');
    let at = 0;
    let gaps = 0;
    for (const rec of r.records) {
      const text = Buffer.from(rec.data, 'base64').toString();
      if (rec.marker) {
        const m = /(\d+) bytes of stdout lost/.exec(text);
        assert.ok(m, text);
        const bytes = Number(m[1]);
        assert.equal(bytes, drops[gaps]!.event.data.bytes, 'the marker and the event say the same');
        assert.equal(at, drops[gaps]!.event.data.offset, 'the marker stands where the bytes went missing');
        at += bytes;
        gaps++;
        continue;
      }
      assert.equal(rec.stream, 'stdout');
      assert.equal(text, expected.slice(at, at + text.length), `bytes at ${at} as written, once`);
      at += text.length;
    }
    assert.equal(at, expected.length, 'everything after the last gap is there');
    assert.ok(gaps >= 1);
    const lost = drops.reduce((sum, d) => sum + d.event.data.bytes, 0);
    assert.ok(lost < expected.length, `${lost} bytes lost of ${expected.length}`);

    // What a person reads: `logs` shows the marker line in place.
    const logs = await ctl('container', 'logs', sb, 'lossy');
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /\[sandboxd: \d+ bytes of stdout lost/);
    assert.match(logs.stdout, /line 9999\n$/);
  });

  it('removes every log file and dir with a sandbox of several containers and execs', async () => {
    for (const id of ['c1', 'c2']) await runContainer(id, ['sh', '-c', `echo ${id}; sleep 100000`]);
    for (const id of ['c1', 'c2']) {
      for (const execId of ['e1', 'e2']) {
        await call('exec.start', {
          sandboxId: sb,
          containerId: id,
          execId,
          process: { args: ['sh', '-c', `echo ${id}-${execId}; echo err >&2`] },
        });
      }
    }
    await until('every log written', 120_000, async () => {
      for (const sub of ['c1/init', 'c2/init', 'c1/exec-e1', 'c1/exec-e2', 'c2/exec-e1', 'c2/exec-e2']) {
        if ((await logBytes(sub)) === 0) return undefined;
      }
      return true;
    });
    const out = await ctl('exec', 'output', sb, 'c2', 'e1');
    assert.equal(out.stdout, 'c2-e1\n');
    const del = await ctl('sandbox', 'delete', '--force', sb);
    assert.equal(del.code, 0, del.stderr);
    assert.equal(await exists(logsDir()), false, 'the logs dir is gone');
    assert.equal(await exists(sandboxDir()), false, 'the sandbox dir is gone');
    // And stays gone: no writer of the keeper makes it again a moment later.
    const settled = Date.now() + 3000;
    await until('nothing made again', 10_000, async () => {
      assert.equal(await exists(logsDir()), false, 'the logs dir came back');
      return Date.now() > settled ? true : undefined;
    });
  });
});
