// The shim end to end: a real containerd (Debian's 1.6, in a temp dir) runs tasks with
// `--runtime io.containerd.sandboxd.v1` through containerd-shim-sandboxd-v1, a real sandboxd daemon and
// real VMs. One daemon and one containerd for the file.
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { until } from './support/containerd.js';
import { IMAGE, RUNTIME, type ShimWorld, startShimWorld, VM_MS } from './support/containerd-world.js';

describe('containerd shim with a real containerd, sandboxd and VMs', { timeout: 1_800_000 }, () => {
  let world: ShimWorld;

  before(async () => {
    world = await startShimWorld();
  });

  after(async () => {
    await world?.stop();
  });

  it('ctr run --rm prints hi and exits 3, and the same id runs again at once', {
    timeout: VM_MS * 2,
  }, async () => {
    for (let round = 0; round < 2; round++) {
      const r = await world.ctr([
        'run',
        '--runtime',
        RUNTIME,
        '--rm',
        IMAGE,
        't1',
        'sh',
        '-c',
        'echo hi; exit 3',
      ]);
      const why = async () => `round ${round}: ${r.stderr}\n${await world.shimLog()}`;
      assert.equal(r.code, 3, await why());
      assert.equal(r.stdout, 'hi\n', await why());
    }
    const tasks = await world.ctr(['task', 'ls', '-q']);
    assert.equal(tasks.stdout.trim(), '');
    const containers = await world.ctr(['containers', 'ls', '-q']);
    assert.equal(containers.stdout.trim(), '');
  });

  it('leaves no sandbox behind and the shim server exits once no task remains', {
    timeout: VM_MS,
  }, async () => {
    assert.deepEqual(await world.call('sandbox.list'), []);
    // The server removes its socket, then its pid file, as it exits.
    await until('the shim server to exit', async () =>
      (await world.shimPid()) === undefined ? true : undefined,
    );
    await assert.rejects(access(world.shimSocket), /ENOENT/, 'the socket goes with the server');
  });
});
