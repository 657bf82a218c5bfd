// events explain over the real runtime and API (fake world): who asked, intent/outcome pairs, durations, why it ended.
import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import type { ApiClient } from '../src/api/index.js';
import { type Explanation, explainFromLog, parseEntityRef } from '../src/explain/index.js';
import { type Harness, withApi } from './support/api-harness.js';

/** Injected latencies (ms) of the fake world's ports. */
const delays = { launch: 150, connect: 100, createSandbox: 80, createContainer: 60, startContainer: 40 };
/** Timer noise allowed above an injected delay, beyond the event loop's own worst stall in this run. */
const noise = 150;
// On a shared, loaded machine the process itself is not scheduled for hundreds of ms at times: that much
// comes on top of any step, so the allowance grows by the worst event-loop delay measured meanwhile.
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

function near(actual: number | undefined, expected: number, what: string): void {
  assert.ok(actual !== undefined, `${what}: no duration`);
  const allowed = noise + loopDelay.max / 1e6;
  assert.ok(
    actual >= expected - 2 && actual <= expected + allowed,
    `${what}: ${actual} ms, injected ${expected} ms (allowed ${Math.round(allowed)} ms above it)`,
  );
}

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

describe('events explain (fake world, real runtime and API)', () => {
  let h: Harness;
  let c: ApiClient;
  withApi((api) => {
    h = api.h;
    c = api.c;
    Object.assign(h.world.delays, delays);
  });
  const explain = (ref: string): Promise<Explanation> => explainFromLog(h.store, parseEntityRef(ref));
  let connection: number;

  it('times each boot phase of a start to the injected delays and names the connection that asked', async () => {
    await c.call('sandbox.create', { id: 'web' });
    await c.call('sandbox.start', { id: 'web' });
    const x = await explain('web');
    const start = x.lives[0]!.operations.find((o) => o.intent === 'SandboxStartRequested')!;
    assert.equal(start.from, 'created');
    assert.equal(start.to, 'running');
    assert.equal(start.settled, 'effect');
    assert.equal(start.origin.by, 'api');
    assert.ok(start.origin.by === 'api' && start.origin.method === 'sandbox.start');
    connection = start.origin.by === 'api' ? start.origin.connection! : -1;
    assert.ok(Number.isInteger(connection), 'the connection is recorded');
    assert.match(start.by, /^api sandbox\.start \(connection \d+\)$/);
    assert.deepEqual(
      start.steps.map((s) => [s.name, s.outcome]),
      [
        ['launch', 'VmLaunched'],
        ['agent connect', 'AgentConnected'],
        ['guest init', 'SandboxStarted'],
      ],
    );
    near(start.steps[0]!.ms, delays.launch, 'launch');
    near(start.steps[1]!.ms, delays.connect, 'agent connect');
    near(start.steps[2]!.ms, delays.createSandbox, 'guest init');
    assert.equal(
      start.steps.reduce((sum, s) => sum + s.ms, 0),
      start.totalMs,
      'the steps add up to the start',
    );
    // Each outcome is paired with the event whose effect it answers, by causationId.
    const timeline = x.lives[0]!.timeline;
    const requested = timeline.find((e) => e.type === 'SandboxStartRequested')!;
    const launched = timeline.find((e) => e.type === 'VmLaunched')!;
    assert.equal(launched.causeSeq, requested.seq);
    assert.equal(start.steps[0]!.causeSeq, requested.seq);
    assert.equal(x.ended, undefined, 'a running sandbox has not ended');
  });

  it('says a container was OOM-killed, as the agent reported it', async () => {
    await c.call('container.create', { sandboxId: 'web', id: 'hog', bundle: h.apiBundle });
    await c.call('container.start', { sandboxId: 'web', id: 'hog' });
    h.world.oomKill('web', 'hog');
    await h.runtime.waitContainer('web', 'hog');
    const x = await explain('web/hog');
    assert.equal(x.state, 'stopped');
    assert.equal(x.ended, 'OOM-killed (SIGKILL, exit 137)');
    const create = x.lives[0]!.operations[0]!;
    assert.equal(create.intent, 'ContainerCreateRequested');
    near(create.totalMs, delays.createContainer, 'container create');
    near(x.lives[0]!.operations[1]!.totalMs, delays.startContainer, 'container start');
    const oom = x.lives[0]!.timeline.find((e) => e.type === 'ContainerOomKilled')!;
    assert.equal(oom.by, 'supervision (agent)');
    assert.equal(oom.from, 'running');
  });

  it('says an exec was ended by a signal', async () => {
    await c.call('container.create', { sandboxId: 'web', id: 'app', bundle: h.apiBundle });
    await c.call('container.start', { sandboxId: 'web', id: 'app' });
    await c.call('exec.start', {
      sandboxId: 'web',
      containerId: 'app',
      execId: 'sh',
      process: { args: ['sh'] },
    });
    h.world.exitProcess('web', 'app', 'sh', { exitCode: 143, signal: 'SIGTERM' });
    await h.runtime.waitExec('web', 'app', 'sh');
    const x = await explain('web/app/sh');
    assert.equal(x.kind, 'exec');
    assert.equal(x.ended, 'killed by SIGTERM (exit 143)');
    assert.match(x.lives[0]!.operations[0]!.by, /^api exec\.start \(connection \d+\)$/);
  });

  it('says the VM was lost when QEMU died unasked, and what that took with it', async () => {
    h.world.crashVm('web', 'QEMU process disappeared');
    await until('sandbox lost', () => h.runtime.getSandbox('web').state === 'lost');
    await until('container lost', () => h.runtime.getContainer('web', 'app').state === 'stopped');
    const x = await explain('web');
    assert.equal(x.state, 'lost');
    assert.equal(x.ended, 'VM lost: QEMU killed without a QMP SHUTDOWN (SIGKILL or a crash)');
    const exited = x.lives[0]!.timeline.find((e) => e.type === 'VmExited')!;
    assert.equal(exited.by, 'supervision (QEMU)');
    assert.deepEqual([exited.from, exited.to], ['running', 'lost']);
    const app = await explain('web/app');
    assert.equal(app.ended, 'lost: sandbox lost');
    assert.equal(app.lives[0]!.timeline.at(-1)!.by, 'supervision (parent ended)');
  });

  it('says a deleted sandbox was deleted by request, after what ended it', async () => {
    await c.call('sandbox.delete', { id: 'web' });
    const x = await explain('web');
    assert.equal(x.state, 'deleted');
    assert.equal(
      x.ended,
      'VM lost: QEMU killed without a QMP SHUTDOWN (SIGKILL or a crash); then deleted by request',
    );
    const del = x.lives[0]!.operations.at(-1)!;
    assert.deepEqual([del.intent, del.from, del.to], ['SandboxDeleteRequested', 'lost', 'deleted']);
    assert.equal(del.by, `api sandbox.delete (connection ${connection})`);
  });

  it('explains every life of a reused id, oldest first', async () => {
    await c.call('sandbox.create', { id: 'web' });
    const x = await explain('web');
    assert.deepEqual(
      x.lives.map((l) => [l.stream, l.incarnation, l.state]),
      [
        ['sandbox-web', 1, 'deleted'],
        ['sandbox-web~2', 2, 'created'],
      ],
    );
    assert.equal(x.state, 'created');
    assert.equal(x.ended, undefined);
  });

  it('refuses a malformed reference and an unknown entity with typed errors', async () => {
    assert.throws(() => parseEntityRef('web/a/b/c'), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => parseEntityRef('web/-x'), /container id "-x"/);
    await assert.rejects(explain('nosuch'), { code: 'NOT_FOUND' });
    await assert.rejects(explain('web/nosuch'), { code: 'NOT_FOUND' });
  });
});
