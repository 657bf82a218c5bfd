// The shim end to end: a real containerd (Debian's 1.6, in a temp dir) runs tasks with
// `--runtime io.containerd.sandboxd.v1` through containerd-shim-sandboxd-v1, a real sandboxd daemon and
// real VMs. One daemon and one containerd for the file.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
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

  it('a task that prints 8 MiB and exits at once delivers all 8 MiB before its TaskExit', {
    timeout: VM_MS,
  }, async () => {
    const size = 8 * 1024 * 1024;
    const line = 'abcdefghijklmnopqrstuvwxyz0123\n';
    const expected = Buffer.from(line.repeat(Math.ceil(size / line.length))).subarray(0, size);
    // ctr events and an attached ctr run side by side: how much of the output had arrived when containerd
    // published the task's exit. Between the shim's fifo and this test sit at most a fifo, ctr's copy buffer
    // and a pipe (64 + 32 + 64 KiB); an exit sent before the output was written finds megabytes missing.
    const events = spawn('ctr', ['--address', world.ctrd.address, 'events'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let seen = '';
    let atExit: number | undefined;
    const chunks: Buffer[] = [];
    let received = 0;
    events.stdout.setEncoding('utf8').on('data', (d: string) => {
      seen += d;
      if (atExit === undefined && /\/tasks\/exit .*"container_id":"o8"/.test(seen)) atExit = received;
    });
    try {
      // ctr events prints nothing until something happens: a container created and deleted is the barrier
      // that it listens (repeated, as one made before its subscription is not shown).
      await until('ctr events to subscribe', async () => {
        assert.equal((await world.ctr(['containers', 'create', IMAGE, 'p8'])).code, 0);
        assert.equal((await world.ctr(['containers', 'delete', 'p8'])).code, 0);
        return seen.includes('/containers/delete') ? true : undefined;
      });
      const run = spawn(
        'ctr',
        [
          '--address',
          world.ctrd.address,
          'run',
          '--rm',
          '--runtime',
          RUNTIME,
          IMAGE,
          'o8',
          'sh',
          '-c',
          `yes ${line.trim()} | head -c ${size}`,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      run.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      run.stdout.on('data', (d: Buffer) => {
        chunks.push(d);
        received += d.length;
      });
      const code = await new Promise<number | null>((r) => run.once('close', (c) => r(c)));
      assert.equal(code, 0, stderr);
      const out = Buffer.concat(chunks);
      assert.equal(out.length, size, 'all 8 MiB reached ctr');
      assert.ok(out.equals(expected), 'byte for byte');
      await until('the exit event', () => atExit);
      assert.ok(
        (atExit as number) >= size - 256 * 1024,
        `only ${atExit} of ${size} bytes had arrived when containerd published the TaskExit`,
      );
    } finally {
      events.kill('SIGTERM');
    }
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
