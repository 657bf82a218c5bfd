// Task calls through the shim with a real containerd, sandboxd and VM: ctr run -d, task ls, exec (and -t),
// ps, metrics, pause/resume, kill, kill --all, delete. One daemon, one containerd, one long-running task.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { until } from './support/containerd.js';
import {
  IMAGE,
  RUNTIME,
  type ShimWorld,
  startShimWorld,
  taskStatus,
  VM_MS,
} from './support/containerd-world.js';

describe('shim task calls with a real containerd, sandboxd and VM', { timeout: 1_800_000 }, () => {
  let world: ShimWorld;
  const why = async (r: { stderr: string }) => `${r.stderr}\n--- shim log ---\n${await world.shimLog()}`;

  before(async () => {
    world = await startShimWorld();
  });

  after(async () => {
    await world?.stop();
  });

  it('ctr run -d starts a task that ctr task ls shows RUNNING with its pid', { timeout: VM_MS }, async () => {
    const r = await world.ctr(['run', '-d', '--runtime', RUNTIME, IMAGE, 't1', 'sleep', '100000']);
    assert.equal(r.code, 0, await why(r));
    const pid = await taskStatus(world, 't1', 'RUNNING');
    assert.ok(pid > 0, `pid ${pid}`);
  });

  it('ctr task exec prints stdout and stderr and exits with the exec status', {
    timeout: VM_MS,
  }, async () => {
    const r = await world.ctr([
      'task',
      'exec',
      '--exec-id',
      'e1',
      't1',
      'sh',
      '-c',
      'echo out; echo err >&2; exit 4',
    ]);
    assert.equal(r.stdout, 'out\n', await why(r));
    assert.match(r.stderr, /^err$/m, await why(r));
    assert.equal(r.code, 4, await why(r));
  });
});
