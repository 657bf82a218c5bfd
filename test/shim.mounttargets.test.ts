// A read-only task rootfs gets the mount targets its spec's binds need (CRI's pause container: its
// /etc/resolv.conf, /etc/hostname, /etc/hosts binds on an image that has none), made by the shim on the host
// as runc makes them before it remounts the root read-only; an image's symlink is never followed out.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeMountTargets, mountTargets } from '../src/shim/index.js';

describe('shim mount targets of a read-only rootfs', () => {
  let dir: string;
  let rootfs: string;
  let hostFile: string;
  let hostDir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shim-targets-'));
    rootfs = join(dir, 'rootfs');
    hostFile = join(dir, 'resolv.conf');
    hostDir = join(dir, 'volume');
    await mkdir(join(rootfs, 'etc'), { recursive: true });
    await writeFile(hostFile, 'nameserver 10.0.0.1\n');
    await mkdir(hostDir);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('plans a file for a bind of a host file, a directory otherwise, nothing below another mount', () => {
    const mounts = [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs' },
      { destination: '/dev/shm', type: 'bind', source: '/x/shm', options: ['rbind'] },
      { destination: '/etc/resolv.conf', type: 'bind', source: '/x/resolv.conf', options: ['rbind', 'ro'] },
      { destination: '/data//v/', source: '/x/v', options: ['bind'] },
      { destination: 'relative', type: 'tmpfs' },
    ];
    const kinds = (m: { source?: string }) => (m.source === '/x/resolv.conf' ? 'file' : 'dir');
    assert.deepEqual(mountTargets(mounts, kinds), [
      { path: '/proc', kind: 'dir' },
      { path: '/dev', kind: 'dir' },
      { path: '/etc/resolv.conf', kind: 'file' },
      { path: '/data/v', kind: 'dir' },
    ]);
  });

  it('makes the missing targets in the rootfs, by the kind of each bind source, and leaves existing ones', async () => {
    await writeFile(join(rootfs, 'etc', 'hosts'), '127.0.0.1 localhost\n');
    await makeMountTargets(rootfs, [
      { destination: '/etc/resolv.conf', type: 'bind', source: hostFile, options: ['rbind', 'ro'] },
      { destination: '/etc/hosts', type: 'bind', source: hostFile, options: ['rbind'] },
      { destination: '/mnt/data', type: 'bind', source: hostDir, options: ['rbind'] },
      { destination: '/run', type: 'tmpfs', source: 'tmpfs' },
    ]);
    assert.ok((await stat(join(rootfs, 'etc', 'resolv.conf'))).isFile());
    assert.equal((await stat(join(rootfs, 'etc', 'resolv.conf'))).size, 0);
    assert.equal((await stat(join(rootfs, 'etc', 'hosts'))).size, 20, 'an existing target is left as it is');
    assert.ok((await stat(join(rootfs, 'mnt', 'data'))).isDirectory());
    assert.ok((await stat(join(rootfs, 'run'))).isDirectory());
  });

  it("never follows an image's symlink out of the rootfs", async () => {
    const outside = join(dir, 'outside');
    await mkdir(outside);
    await symlink(outside, join(rootfs, 'escape'));
    await makeMountTargets(rootfs, [
      { destination: '/escape/resolv.conf', type: 'bind', source: hostFile, options: ['rbind'] },
    ]);
    assert.deepEqual(await readdir(outside), []);
  });
});
