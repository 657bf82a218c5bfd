// Commands for one entity apply in arrival order, a pending create included: pipelined lines on one raw connection.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type RawClient, rawClient, startHarness } from './support/api-harness.js';

interface Answer {
  readonly id: number;
  readonly result?: unknown;
  readonly error?: { code: number; message: string; data?: { code?: string } };
}

/** Writes every request in one write (no waiting between them) and returns the answers by request id. */
async function pipelined(raw: RawClient, calls: [string, unknown][]): Promise<Answer[]> {
  const base = Math.floor(Math.random() * 1e6);
  const lines = calls.map(([method, params], i) =>
    JSON.stringify({ jsonrpc: '2.0', id: base + i, method, params }),
  );
  raw.send(`${lines.join('\n')}\n`);
  const answers = new Map<number, Answer>();
  while (answers.size < calls.length) {
    const a = (await raw.next(10_000)) as Answer;
    answers.set(a.id, a);
  }
  return calls.map((_, i) => answers.get(base + i)!);
}

function ok(a: Answer, what: string): void {
  assert.equal(a.error, undefined, `${what}: ${JSON.stringify(a.error)}`);
}

describe('commands pipelined on one connection', () => {
  it('apply in arrival order: create then delete, create then start, exec start then kill', async () => {
    const h = await startHarness();
    const raw = await rawClient(h.socketPath);
    try {
      const [created, deleted] = await pipelined(raw, [
        ['sandbox.create', { id: 'e0' }],
        ['sandbox.delete', { id: 'e0' }],
      ]);
      ok(created!, 'sandbox.create');
      ok(deleted!, 'sandbox.delete');
      const types = (await h.events()).filter((e) => e.stream === 'sandbox-e0').map((e) => e.type);
      assert.deepEqual(types, ['SandboxCreated', 'SandboxDeleteRequested', 'SandboxDeleted']);

      const [c1, s1] = await pipelined(raw, [
        ['sandbox.create', { id: 'e1' }],
        ['sandbox.start', { id: 'e1' }],
      ]);
      ok(c1!, 'sandbox.create');
      ok(s1!, 'sandbox.start');

      const [cc, cs, es, ek, ew] = await pipelined(raw, [
        ['container.create', { sandboxId: 'e1', id: 'c', bundle: h.apiBundle }],
        ['container.start', { sandboxId: 'e1', id: 'c' }],
        ['exec.start', { sandboxId: 'e1', containerId: 'c', execId: 'x', process: { args: ['sleep', '9'] } }],
        ['exec.kill', { sandboxId: 'e1', containerId: 'c', execId: 'x', signal: 'SIGKILL' }],
        ['container.wait', { sandboxId: 'e1', id: 'c', timeoutMs: 1 }],
      ]);
      ok(cc!, 'container.create');
      ok(cs!, 'container.start');
      assert.equal((cs!.result as { state: string }).state, 'running');
      ok(es!, 'exec.start');
      ok(ek!, 'exec.kill');
      // The wait began after the start: the container runs, so a 1 ms wait ends without an exit.
      assert.notEqual(ew!.error?.data?.code, 'NotFound', JSON.stringify(ew));
    } finally {
      raw.close();
      await h.close();
    }
  });

  it('answers NotFound to a command that followed a create which was refused, and records nothing', async () => {
    const h = await startHarness();
    const raw = await rawClient(h.socketPath);
    try {
      await pipelined(raw, [
        ['sandbox.create', { id: 'r1' }],
        ['sandbox.start', { id: 'r1' }],
      ]);
      const seq = (await h.events()).length;
      const [cc, cs] = await pipelined(raw, [
        ['container.create', { sandboxId: 'r1', id: 'bad', bundle: '/nonexistent/bundle' }],
        ['container.start', { sandboxId: 'r1', id: 'bad' }],
      ]);
      assert.equal(cc!.error?.data?.code, 'InvalidArgument', JSON.stringify(cc));
      assert.equal(cs!.error?.data?.code, 'NotFound', JSON.stringify(cs));
      assert.equal((await h.events()).length, seq, 'nothing was recorded');
    } finally {
      raw.close();
      await h.close();
    }
  });

  it('refuses to kill a created container with InvalidState, records nothing, and its start still works', async () => {
    const h = await startHarness();
    const raw = await rawClient(h.socketPath);
    try {
      await pipelined(raw, [
        ['sandbox.create', { id: 'k1' }],
        ['sandbox.start', { id: 'k1' }],
      ]);
      const [cc] = await pipelined(raw, [
        ['container.create', { sandboxId: 'k1', id: 'c', bundle: h.apiBundle }],
      ]);
      ok(cc!, 'container.create');
      const seq = (await h.events()).length;
      const [kill] = await pipelined(raw, [
        ['container.kill', { sandboxId: 'k1', id: 'c', signal: 'SIGKILL' }],
      ]);
      assert.equal(kill!.error?.data?.code, 'InvalidState', JSON.stringify(kill));
      assert.match(kill!.error!.message, /created/);
      assert.equal((await h.events()).length, seq, 'nothing was recorded');
      assert.equal(
        h.agent.calls.filter((c) => c.startsWith('signalProcess:')).length,
        0,
        'no signal reached the guest',
      );
      const [start] = await pipelined(raw, [['container.start', { sandboxId: 'k1', id: 'c' }]]);
      ok(start!, 'container.start');
      assert.equal((start!.result as { state: string }).state, 'running');
    } finally {
      raw.close();
      await h.close();
    }
  });
});
