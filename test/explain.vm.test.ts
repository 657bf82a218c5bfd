// A real VM: explain's boot phases (launch, agent connect, guest init) add up to the start a client measured (± 5 %).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { explainFromLog, parseEntityRef } from '../src/explain/index.js';
import { openRealWorld, type RealWorld } from './fixtures/hypervisor-world.js';
import { qemuPidsUsing } from './support/vm.js';

describe('events explain of a real sandbox', { timeout: 600_000 }, () => {
  let dir: string;
  let world: RealWorld | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-explain-'));
    world = await openRealWorld(join(dir, 'world'));
  });
  after(async () => {
    await world?.runtime.deleteSandbox('demo', { force: true }).catch(() => undefined);
    await world?.close().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('lists boot phases whose durations add up to the measured start', async () => {
    const w = world!;
    await w.runtime.createSandbox('demo', { memoryMiB: 256 });
    const t0 = performance.now();
    await w.runtime.startSandbox('demo');
    const measuredMs = performance.now() - t0;
    const x = await explainFromLog(w.store, parseEntityRef('demo'));
    const start = x.lives[0]!.operations.find((o) => o.intent === 'SandboxStartRequested')!;
    assert.deepEqual(
      start.steps.map((s) => s.name),
      ['launch', 'agent connect', 'guest init'],
    );
    assert.ok(
      start.steps.every((s) => s.ms > 0),
      JSON.stringify(start.steps),
    );
    const sum = start.steps.reduce((n, s) => n + s.ms, 0);
    assert.equal(sum, start.totalMs);
    const off = Math.abs(sum - measuredMs) / measuredMs;
    assert.ok(
      off <= 0.05,
      `phases ${sum} ms vs measured ${Math.round(measuredMs)} ms (${(off * 100).toFixed(1)} %)`,
    );
    process.stdout.write(
      `start ${Math.round(measuredMs)} ms measured, phases ${start.steps.map((s) => `${s.name} ${s.ms}`).join(', ')} = ${sum} ms\n`,
    );
  });
});
