// createBusyboxBundle writes an OCI bundle crun can run: config.json per runtime-spec 1.0 and a busybox-static rootfs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstat, mkdtemp, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InvalidArgument } from '../src/errors/index.js';
import { busyboxPath, createBusyboxBundle } from '../src/image/index.js';

interface OciConfig {
  ociVersion: string;
  process: { terminal: boolean; args: string[]; env: string[]; cwd: string; user: { uid: number } };
  root: { path: string };
  mounts: Array<{ destination: string; type: string }>;
  linux: {
    namespaces: Array<{ type: string }>;
    cgroupsPath?: string;
    resources: { memory?: { limit: number } };
  };
}

describe('busybox OCI bundle', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-image-bundle-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a runtime-spec 1.0 config with the given process, limits and namespaces', async () => {
    const bundle = join(dir, 'one');
    await createBusyboxBundle(bundle, {
      args: ['echo', 'hi'],
      env: ['FOO=bar'],
      cwd: '/tmp',
      terminal: true,
      memoryLimitBytes: 32 * 1024 * 1024,
      cgroupsPath: '/sandboxd/one',
    });
    const config = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as OciConfig;
    assert.match(config.ociVersion, /^1\.0\.\d+$/);
    assert.deepEqual(config.process.args, ['echo', 'hi']);
    assert.equal(config.process.cwd, '/tmp');
    assert.equal(config.process.terminal, true);
    assert.equal(config.process.user.uid, 0);
    assert.ok(config.process.env.includes('FOO=bar'));
    assert.ok(config.process.env.some((entry) => entry.startsWith('PATH=')));
    assert.equal(config.root.path, 'rootfs');
    assert.equal(config.linux.cgroupsPath, '/sandboxd/one');
    assert.equal(config.linux.resources.memory?.limit, 32 * 1024 * 1024);
    const namespaces = config.linux.namespaces.map((ns) => ns.type);
    for (const type of ['pid', 'ipc', 'uts', 'mount']) assert.ok(namespaces.includes(type), type);
    const mounts = new Map(config.mounts.map((mount) => [mount.destination, mount.type]));
    assert.equal(mounts.get('/proc'), 'proc');
    assert.equal(mounts.get('/dev/pts'), 'devpts');
    assert.equal(mounts.get('/sys'), 'sysfs');
  });

  it('defaults to sh without a terminal or limits', async () => {
    const bundle = join(dir, 'defaults');
    await createBusyboxBundle(bundle);
    const config = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as OciConfig;
    assert.deepEqual(config.process.args, ['sh']);
    assert.equal(config.process.terminal, false);
    assert.equal(config.linux.resources.memory, undefined);
    assert.equal(config.linux.cgroupsPath, undefined);
  });

  it('fills the rootfs with a static busybox whose applet links run', async () => {
    const bundle = join(dir, 'rootfs');
    await createBusyboxBundle(bundle);
    const rootfs = join(bundle, 'rootfs');
    assert.equal((await stat(join(rootfs, 'bin/busybox'))).size, (await stat(busyboxPath())).size);
    assert.ok((await lstat(join(rootfs, 'bin/sh'))).isSymbolicLink());
    assert.equal(await readlink(join(rootfs, 'bin/sh')), 'busybox');
    // Through the link, as the container will run it (a static binary needs nothing else from the rootfs).
    assert.equal(
      execFileSync(join(rootfs, 'bin/sh'), ['-c', 'echo $((2 + 3))'], { encoding: 'utf8' }),
      '5\n',
    );
    for (const sub of ['proc', 'dev', 'sys', 'tmp', 'etc'])
      assert.ok((await stat(join(rootfs, sub))).isDirectory());
    assert.match(await readFile(join(rootfs, 'etc/passwd'), 'utf8'), /^root:x:0:0:/);
  });

  it('can be written twice into the same dir', async () => {
    const bundle = join(dir, 'twice');
    await createBusyboxBundle(bundle, { args: ['true'] });
    await createBusyboxBundle(bundle, { args: ['false'] });
    const config = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as OciConfig;
    assert.deepEqual(config.process.args, ['false']);
  });

  it('refuses a relative cwd and a non-positive memory limit', async () => {
    await assert.rejects(createBusyboxBundle(join(dir, 'bad1'), { cwd: 'tmp' }), InvalidArgument);
    await assert.rejects(createBusyboxBundle(join(dir, 'bad2'), { memoryLimitBytes: 0 }), InvalidArgument);
  });
});
