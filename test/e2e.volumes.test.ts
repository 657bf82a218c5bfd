// Volumes end to end, for real: host directories and files bound into a container through the 9p share, and unbound again.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mountsUnder, unmountAllUnder } from '../src/actors/index.js';
import { createBusyboxBundle } from '../src/image/index.js';
import { execIn, openRealWorld, type RealWorld, worldPaths } from './fixtures/hypervisor-world.js';
import { qemuPidsUsing } from './support/vm.js';

const VM_MS = 180_000;

describe('volumes of a real sandbox', { timeout: 600_000 }, () => {
  let dir: string;
  let world: RealWorld;
  let host: { data: string; out: string; conf: string };
  let sandboxDir: string;
  const sb = 'vol';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-vol-'));
    host = { data: join(dir, 'data'), out: join(dir, 'out'), conf: join(dir, 'app.conf') };
    await mkdir(host.data);
    await mkdir(host.out);
    await writeFile(join(host.data, 'hello.txt'), 'host-data\n');
    await writeFile(host.conf, 'answer=42\n');
    await createBusyboxBundle(join(dir, 'box'), { args: ['sleep', '100000'] });
    world = await openRealWorld(join(dir, 'world'));
    sandboxDir = join(worldPaths(join(dir, 'world')).state, 'sandboxes', sb);
  });

  after(async () => {
    await world?.close().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    // Never remove through a bind that a failed test left behind.
    await unmountAllUnder(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('binds a read-only dir, a writable dir and a single file into the container', {
    timeout: VM_MS,
  }, async () => {
    await world.runtime.createSandbox(sb, {});
    await world.runtime.startSandbox(sb);
    await world.runtime.createContainer({
      sandboxId: sb,
      id: 'app',
      bundle: join(dir, 'box'),
      mounts: [
        { source: host.data, destination: '/data', readonly: true },
        { source: host.out, destination: '/out' },
        { source: host.conf, destination: '/etc/app.conf', readonly: true },
      ],
    });
    await world.runtime.startContainer(sb, 'app');
    // The rootfs is bound into the share too (nothing is copied).
    assert.equal((await mountsUnder(sandboxDir)).length, 4, 'three binds and the rootfs below the share');

    const read = await execIn(world, sb, 'app', 'read', ['cat', '/data/hello.txt', '/etc/app.conf']);
    assert.deepEqual(read.status, { exitCode: 0 });
    assert.equal(read.out, 'host-data\nanswer=42\n');

    const wrote = await execIn(world, sb, 'app', 'write', ['sh', '-c', 'echo from-guest > /out/result']);
    assert.deepEqual(wrote.status, { exitCode: 0 });
    assert.equal(await readFile(join(host.out, 'result'), 'utf8'), 'from-guest\n');

    const refused = await execIn(world, sb, 'app', 'ro', ['sh', '-c', 'echo x > /data/new 2>/dev/null']);
    assert.notEqual(refused.status.exitCode, 0, 'a read-only volume refuses writes');
    await assert.rejects(readFile(join(host.data, 'new')));
  });

  it('unbinds on container delete and leaves the host files alone', { timeout: VM_MS }, async () => {
    await world.runtime.deleteContainer(sb, 'app', { force: true });
    assert.deepEqual(await mountsUnder(sandboxDir), []);
    assert.equal(await readFile(join(host.data, 'hello.txt'), 'utf8'), 'host-data\n');
    assert.equal(await readFile(join(host.out, 'result'), 'utf8'), 'from-guest\n');
  });

  it('unbinds the volumes of containers still there when the sandbox is deleted', {
    timeout: VM_MS,
  }, async () => {
    await world.runtime.createContainer({
      sandboxId: sb,
      id: 'left',
      bundle: join(dir, 'box'),
      mounts: [{ source: host.out, destination: '/out' }],
    });
    assert.equal((await mountsUnder(sandboxDir)).length, 2, 'one volume and the rootfs');
    await world.runtime.deleteSandbox(sb, { force: true });
    assert.deepEqual(await mountsUnder(dir), [], 'no mount left anywhere below the test dir');
    assert.equal(await readFile(join(host.out, 'result'), 'utf8'), 'from-guest\n', 'host files survive');
    assert.deepEqual(await qemuPidsUsing(sandboxDir), []);
  });
});
