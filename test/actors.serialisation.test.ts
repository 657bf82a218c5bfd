// Commands on one entity run one at a time; different entities run in parallel.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { checkTransitions } from '../src/machines/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';

describe('per-entity serialisation', () => {
  let h: Harness;
  before(async () => {
    h = await makeHarness();
  });
  after(async () => {
    await h.cleanup();
  });

  it('lets exactly one of many concurrent starts through; the rest get InvalidState, no conflict', async () => {
    await h.runtime.createSandbox('one', {});
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => h.runtime.startSandbox('one')));
    const ok = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    assert.equal(ok.length, 1);
    assert.equal(refused.length, 7);
    for (const r of refused) assert.equal((r.reason as { kind: string }).kind, 'InvalidState');
    const launches = h.world.effects.filter((e) => e.op === 'launch' && e.sandboxId === 'one');
    assert.equal(launches.length, 1);
  });

  it('lets exactly one of concurrent creates of the same sandbox id through', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => h.runtime.createSandbox('twin', {})),
    );
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) {
      if (r.status === 'rejected') assert.equal((r.reason as { kind: string }).kind, 'AlreadyExists');
    }
  });

  it('runs different sandboxes in parallel: two slow boots take about one boot', async () => {
    h.world.delays.launch = 200;
    await h.runtime.createSandbox('p1', {});
    await h.runtime.createSandbox('p2', {});
    const t0 = performance.now();
    await Promise.all([h.runtime.startSandbox('p1'), h.runtime.startSandbox('p2')]);
    const ms = performance.now() - t0;
    delete h.world.delays.launch;
    assert.ok(ms < 380, `two parallel boots took ${ms} ms`);
  });

  it('keeps per-stream versions gap-free and the log legal under concurrent mixed commands', async () => {
    await Promise.allSettled([
      h.runtime.pauseSandbox('p1'),
      h.runtime.stopSandbox('p1'),
      h.runtime.pauseSandbox('p1'),
      h.runtime.stopSandbox('p2'),
      h.runtime.resumeSandbox('p2'),
    ]);
    await h.runtime.getSandbox('p1');
    const events = await h.events();
    assert.deepEqual(checkTransitions(events), []);
    const versions = new Map<string, number>();
    for (const e of events) {
      assert.equal(e.version, (versions.get(e.stream) ?? 0) + 1);
      versions.set(e.stream, e.version);
    }
  });
});
