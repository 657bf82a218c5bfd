// Runtime rules where they meet a real VM: no alias of the state dir reaches a container, a command missing from
// the image exits 127/126, and a sandbox stop ends its containers as docker stop does. One sandbox for all of it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import pino from 'pino';
import { createRuntime, type RuntimeHandle, unmountAllUnder } from '../src/actors/index.js';
import { createGrpcAgent } from '../src/agent/index.js';
import { type EventEnvelope, streamOf } from '../src/events/index.js';
import { createQemuHypervisor } from '../src/hypervisor/index.js';
import { createBusyboxBundle, ensureGuestImage } from '../src/image/index.js';
import { type LevelEventStore, openLevelEventStore } from '../src/store/index.js';
import { exists, qemuPidsUsing, until } from './support/vm.js';

const run = promisify(execFile);
const VM_MS = 240_000;
const logger = pino({ level: 'silent' });

describe('runtime rules on a real sandbox', { timeout: 900_000 }, () => {
  let dir: string;
  let state: string;
  let store: LevelEventStore;
  let runtime: RuntimeHandle;
  let close: () => Promise<void>;
  const sb = 'rules';
  const box = () => join(dir, 'box');

  async function events(stream: string): Promise<EventEnvelope[]> {
    const out: EventEnvelope[] = [];
    for await (const e of store.readStream(stream)) out.push(e);
    return out;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-rules-'));
    // As the daemon lays it out: the event log inside the state dir.
    state = join(dir, 'state');
    await mkdir(state, { recursive: true });
    await createBusyboxBundle(box(), { args: ['sleep', '100000'] });
    await writeFile(join(box(), 'rootfs', 'not-exec'), '#!/bin/sh\necho never\n');
    await chmod(join(box(), 'rootfs', 'not-exec'), 0o644);
    await createBusyboxBundle(join(dir, 'missing'), { args: ['no-such-command'] });
    await createBusyboxBundle(join(dir, 'notexec'), { args: ['/etc/passwd'] });
    await createBusyboxBundle(join(dir, 'polite'), {
      args: ['sh', '-c', 'trap "echo bye > /marker; exit 0" TERM; touch /ready; while :; do sleep 0.1; done'],
    });
    await createBusyboxBundle(join(dir, 'stubborn'), {
      args: ['sh', '-c', 'trap "" TERM; touch /ready; while :; do sleep 0.1; done'],
    });
    const image = await ensureGuestImage({ logger });
    store = await openLevelEventStore(join(state, 'events'));
    const hypervisor = createQemuHypervisor({ logger });
    const agent = createGrpcAgent({ logger });
    runtime = await createRuntime({
      store,
      hypervisor,
      agent,
      stateDir: state,
      image: () => Promise.resolve(image),
      logger,
    });
    close = async () => {
      await runtime.shutdown();
      await hypervisor.close();
      await (agent as { close?: () => Promise<void> }).close?.();
      await store.close();
    };
    await runtime.createSandbox(sb, {});
    await runtime.startSandbox(sb);
  });

  after(async () => {
    await runtime?.deleteSandbox(sb, { force: true }).catch(() => undefined);
    await close?.().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await unmountAllUnder(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('gives no container the event log through a symlink, .., an ancestor or a bind mount of the state dir', {
    timeout: VM_MS,
  }, async () => {
    const aliases = join(dir, 'aliases');
    await mkdir(join(aliases, 'bound'), { recursive: true });
    await symlink(state, join(aliases, 'to-state'));
    await symlink(dir, join(aliases, 'to-ancestor'));
    await run('mount', ['--bind', state, join(aliases, 'bound')]);
    try {
      const sources = [
        join(aliases, 'to-state'),
        `${aliases}/../state/events`,
        join(aliases, 'to-ancestor'),
        join(aliases, 'bound'),
        join(aliases, 'bound', 'events'),
      ];
      for (const [i, source] of sources.entries()) {
        await assert.rejects(
          runtime.createContainer({
            sandboxId: sb,
            id: `alias${i}`,
            bundle: box(),
            mounts: [{ source, destination: '/data' }],
          }),
          (err: Error & { kind?: string; details?: { field?: string } }) =>
            err.kind === 'InvalidArgument' && err.details?.field === 'mounts.0.source',
          source,
        );
        assert.deepEqual(
          await events(streamOf.container(sb, `alias${i}`)),
          [],
          `${source}: nothing recorded`,
        );
      }
    } finally {
      await run('umount', [join(aliases, 'bound')]);
    }
    // What the guest can see of the host is its share; the log is nowhere in it.
    await runtime.createContainer({ sandboxId: sb, id: 'app', bundle: box() });
    await runtime.startContainer(sb, 'app');
    await runtime.startExec(sb, 'app', 'look', {
      args: [
        'sh',
        '-c',
        'find / -xdev \\( -name "*.ldb" -o -name "MANIFEST-*" \\) 2>/dev/null | grep -q . && exit 3; exit 0',
      ],
    });
    assert.deepEqual(await runtime.waitExec(sb, 'app', 'look'), { exitCode: 0 }, 'no LevelDB file in sight');
  });

  it('records exit 127 for a command not found and 126 for one not executable, in a container and an exec', {
    timeout: VM_MS,
  }, async () => {
    for (const [id, code] of [
      ['missing', 127],
      ['notexec', 126],
    ] as const) {
      await runtime.createContainer({ sandboxId: sb, id, bundle: join(dir, id) });
      await runtime.startContainer(sb, id);
      const exit = await runtime.waitContainer(sb, id);
      assert.equal(exit.exitCode, code, `${id}: ${JSON.stringify(exit)}`);
      const exited = (await events(streamOf.container(sb, id))).find((e) => e.type === 'ContainerExited');
      assert.equal((exited?.data as { exitCode?: number } | undefined)?.exitCode, code);
    }
    for (const [execId, args, code] of [
      ['nf', ['no-such-command'], 127],
      ['nf-path', ['/bin/no-such-command'], 127],
      ['nx', ['/not-exec'], 126],
    ] as const) {
      const view = await runtime.startExec(sb, 'app', execId, { args: [...args] });
      assert.notEqual(view.state, 'failed');
      assert.equal((await runtime.waitExec(sb, 'app', execId)).exitCode, code, execId);
      // An exit, not a failed start (ExecStarted may be overtaken by the exit it announces, as for a quick echo).
      const logged = await events(streamOf.exec(sb, 'app', execId));
      assert.deepEqual(
        logged.map((e) => e.type).filter((t) => t !== 'ExecStarted'),
        ['ExecRequested', 'ProcessExited'],
        execId,
      );
      assert.equal((logged.at(-1)?.data as { exitCode?: number } | undefined)?.exitCode, code);
    }
  });

  it('gives an exec the OCI process fields it asks for: rlimits, no_new_privs, a numeric user with groups, capabilities', {
    timeout: VM_MS,
  }, async () => {
    const out = join(box(), 'rootfs', 'out');
    await mkdir(out, { recursive: true });
    await chmod(out, 0o777);
    await runtime.startExec(sb, 'app', 'extras', {
      args: [
        'sh',
        '-c',
        '{ echo "nofile $(ulimit -n)"; echo "ids $(id -u):$(id -g) $(id -G)"; grep -E "^(NoNewPrivs|CapEff|CapBnd):" /proc/self/status; } > /out/extras',
      ],
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1234, hard: 2048 }],
      noNewPrivileges: true,
      user: { uid: 1000, gid: 1000, additionalGids: [5, 6] },
      capabilities: { bounding: ['CAP_CHOWN'], effective: [], permitted: [], inheritable: [], ambient: [] },
    });
    assert.deepEqual(await runtime.waitExec(sb, 'app', 'extras'), { exitCode: 0 });
    const lines = (await readFile(join(out, 'extras'), 'utf8')).split('\n');
    assert.equal(lines[0], 'nofile 1234');
    assert.match(lines[1]!, /^ids 1000:1000 1000 5 6$/);
    assert.deepEqual(
      lines.slice(2, 5).map((l) => l.replace(/\s+/g, ' ')),
      ['CapEff: 0000000000000000', 'CapBnd: 0000000000000001', 'NoNewPrivs: 1'],
    );
    // The same fields reach the log as they were asked (an exec is explainable after the fact).
    const requested = (await events(streamOf.exec(sb, 'app', 'extras')))[0]!;
    assert.deepEqual((requested.data as { process: { rlimits?: unknown } }).process.rlimits, [
      { type: 'RLIMIT_NOFILE', soft: 1234, hard: 2048 },
    ]);
  });

  it('stops gracefully: SIGTERM first, the grace period, then SIGKILL; each exit recorded', {
    timeout: VM_MS,
  }, async () => {
    for (const id of ['polite', 'stubborn']) {
      await runtime.createContainer({ sandboxId: sb, id, bundle: join(dir, id) });
      await runtime.startContainer(sb, id);
    }
    // The shells must have set their traps before the stop (PID 1 ignores a TERM it has no handler for).
    for (const id of ['polite', 'stubborn']) {
      await until(`${id} ready`, 60_000, async () =>
        (await exists(join(dir, id, 'rootfs', 'ready'))) ? true : undefined,
      );
    }
    const started = Date.now();
    await runtime.stopSandbox(sb, { timeoutMs: 4_000 });
    const took = Date.now() - started;
    assert.equal(
      await readFile(join(dir, 'polite', 'rootfs', 'marker'), 'utf8'),
      'bye\n',
      'the TERM handler ran',
    );
    const exitOf = async (id: string) =>
      (await events(streamOf.container(sb, id))).find((e) => e.type === 'ContainerExited')?.data;
    assert.deepEqual(await exitOf('polite'), { exitCode: 0, oomKilled: false });
    assert.deepEqual(await exitOf('stubborn'), { exitCode: 137, signal: 'SIGKILL', oomKilled: false });
    assert.ok(took >= 4_000, `the stubborn one had its grace period (${took} ms)`);
    assert.equal(runtime.getSandbox(sb).state, 'stopped');
  });
});
