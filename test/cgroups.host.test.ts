// Host cgroups (src/cgroups): where a spec's cgroupsPath lands for v1, v2 and hybrid mount tables and for
// systemd's slice:prefix:name (pure, from mountinfo text); on this host, a cgroup made in every hierarchy, joined
// by a real process and removed once it is gone; and the daemon's check of config.hostCgroup through the API.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import type { ApiClient } from '../src/api/index.js';
import {
  cgroupDirsFor,
  cgroupPids,
  createCgroups,
  hierarchiesOf,
  hostCgroupDirs,
  joinCgroups,
  ownCgroupsOf,
  removeCgroups,
  systemdCgroupPath,
} from '../src/cgroups/index.js';
import { InvalidArgument } from '../src/errors/index.js';
import { type Harness, refused, withApi } from './support/api-harness.js';

const HYBRID = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate',
  '50 23 0:40 / /proc rw - proc proc rw',
].join('\n');
const OWN_HYBRID = ownCgroupsOf('4:cpu,cpuacct:/user.slice\n3:memory:/jobs/7\n2:name=systemd:/x\n0::/x\n');
const V2 = '30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n';

describe('where a cgroupsPath lands (runc placement)', () => {
  it('reads the hierarchies of a mount table: v1 controllers (named ones too), the v2 tree', () => {
    assert.deepEqual(hierarchiesOf(HYBRID), [
      { mount: '/sys/fs/cgroup/cpu,cpuacct', root: '/', version: 1, controllers: ['cpu', 'cpuacct'] },
      { mount: '/sys/fs/cgroup/memory', root: '/', version: 1, controllers: ['memory'] },
      { mount: '/sys/fs/cgroup/systemd', root: '/', version: 1, controllers: ['name=systemd'] },
      { mount: '/sys/fs/cgroup/unified', root: '/', version: 2, controllers: [] },
    ]);
  });

  it('an absolute path is under the top of every hierarchy (hybrid: the unified tree as well)', () => {
    const dirs = cgroupDirsFor({
      cgroupsPath: '/libpod_parent/libpod-abc',
      hierarchies: hierarchiesOf(HYBRID),
      own: OWN_HYBRID,
    });
    assert.deepEqual(dirs, [
      '/sys/fs/cgroup/cpu,cpuacct/libpod_parent/libpod-abc',
      '/sys/fs/cgroup/memory/libpod_parent/libpod-abc',
      '/sys/fs/cgroup/systemd/libpod_parent/libpod-abc',
      '/sys/fs/cgroup/unified/libpod_parent/libpod-abc',
    ]);
    assert.deepEqual(
      cgroupDirsFor({ cgroupsPath: '/a/b', hierarchies: hierarchiesOf(V2), own: new Map() }),
      ['/sys/fs/cgroup/a/b'],
      'v2: one tree',
    );
  });

  it("a relative path is under the caller's own cgroup in each hierarchy", () => {
    const dirs = cgroupDirsFor({ cgroupsPath: 'c1', hierarchies: hierarchiesOf(HYBRID), own: OWN_HYBRID });
    assert.deepEqual(dirs, [
      '/sys/fs/cgroup/cpu,cpuacct/user.slice/c1',
      '/sys/fs/cgroup/memory/jobs/7/c1',
      '/sys/fs/cgroup/systemd/x/c1',
      '/sys/fs/cgroup/unified/x/c1',
    ]);
  });

  it('a mount showing part of a hierarchy (cgroup namespace): the path relative to what it shows', () => {
    const ns = '30 23 0:27 /jobs /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n';
    assert.deepEqual(
      cgroupDirsFor({ cgroupsPath: '/jobs/7/c', hierarchies: hierarchiesOf(ns), own: new Map() }),
      ['/sys/fs/cgroup/7/c'],
    );
  });

  it("systemd's slice:prefix:name: the path systemd gives the transient scope (slices nested)", () => {
    assert.equal(systemdCgroupPath('machine.slice:libpod:abc'), '/machine.slice/libpod-abc.scope');
    assert.equal(systemdCgroupPath('a-b-c.slice:p:n'), '/a.slice/a-b.slice/a-b-c.slice/p-n.scope');
    assert.equal(systemdCgroupPath(':runc:x'), '/system.slice/runc-x.scope', 'default slice');
    assert.equal(systemdCgroupPath('user.slice::pod.slice'), '/user.slice/pod.slice', 'a slice as the unit');
    assert.deepEqual(
      cgroupDirsFor({
        cgroupsPath: 'machine.slice:libpod:abc',
        systemd: true,
        hierarchies: hierarchiesOf(V2),
        own: new Map(),
      }),
      ['/sys/fs/cgroup/machine.slice/libpod-abc.scope'],
    );
  });

  it('refuses a path that climbs out, names nothing, or a malformed systemd one, naming linux.cgroupsPath', () => {
    const h = hierarchiesOf(HYBRID);
    for (const [cgroupsPath, systemd] of [
      ['/a/../../etc', false],
      ['/', false],
      ['/a/b', true],
      ['machine:libpod:abc', true],
      ['machine.slice:libpod:', true],
      ['a--b.slice:p:n', true],
    ] as const) {
      assert.throws(
        () => cgroupDirsFor({ cgroupsPath, systemd, hierarchies: h, own: OWN_HYBRID }),
        (e: unknown) => e instanceof InvalidArgument && e.field === 'linux.cgroupsPath',
        cgroupsPath,
      );
    }
  });
});

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

describe('a host cgroup on this machine', () => {
  it('is made in every mounted hierarchy, joined by a real process, and removed once it is gone', async () => {
    const name = `/sbx-cgtest-${process.pid}/c${Date.now()}`;
    const dirs = await hostCgroupDirs(name);
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .filter((l) => / - cgroup2? /.test(l));
    assert.equal(dirs.length, mounts.length, 'one directory per mounted hierarchy');
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    const parents = dirs.map((d) => d.slice(0, d.lastIndexOf('/')));
    try {
      const made = await createCgroups(dirs);
      assert.deepEqual(made, dirs);
      assert.ok(child.pid);
      await joinCgroups(dirs, child.pid);
      for (const dir of dirs) assert.deepEqual(await cgroupPids(dir), [child.pid], dir);
      const own = await readFile(`/proc/${child.pid}/cgroup`, 'utf8');
      assert.ok(
        own.split('\n').some((l) => l.endsWith(`:${name}`)),
        own,
      );
      // Still in use: refused (EBUSY) once the short wait ends.
      await assert.rejects(removeCgroups(dirs, 200), /EBUSY/);
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
      await removeCgroups(dirs);
      for (const dir of dirs) assert.equal(await exists(dir), false, dir);
      await removeCgroups(dirs);
    } finally {
      child.kill('SIGKILL');
      await removeCgroups(dirs).catch(() => undefined);
      await removeCgroups(parents).catch(() => undefined);
    }
    for (const p of parents) assert.equal(await exists(p), false, p);
  });
});

describe('config.hostCgroup through the API', () => {
  let h: Harness;
  let c: ApiClient;
  withApi((api) => {
    ({ h, c } = api);
  });

  it('refuses a path outside /sys/fs/cgroup, one not normalised, or one that is not a cgroup, naming it', async () => {
    const seq = h.store.lastSeq();
    const cases: [unknown, string][] = [
      [['/etc'], 'config.hostCgroup.0'],
      [['/sys/fs/cgroup/memory/../../../etc'], 'config.hostCgroup.0'],
      [['/sys/fs/cgroup/memory/', '/sys/fs/cgroup/memory'], 'config.hostCgroup.0'],
      [['/sys/fs/cgroup/memory', '/sys/fs/cgroup/memory/sbx-no-such-cgroup'], 'config.hostCgroup.1'],
      [[], 'config.hostCgroup'],
      ['/sys/fs/cgroup/memory', 'config.hostCgroup'],
    ];
    for (const [hostCgroup, field] of cases) {
      const e = await refused(c.call('sandbox.create', { id: 'cg-bad', config: { hostCgroup } }));
      assert.equal(e.data.code, 'InvalidArgument', JSON.stringify(hostCgroup));
      assert.equal(e.data.field, field, JSON.stringify(hostCgroup));
    }
    assert.equal(h.store.lastSeq(), seq, 'nothing recorded');
  });

  it('records existing cgroup directories in the config', async () => {
    const mounted = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .filter((l) => / - cgroup2? /.test(l))
      .map((l) => l.split(' ')[4]!);
    const view = (await c.call('sandbox.create', { id: 'cg1', config: { hostCgroup: mounted } })) as {
      config: { hostCgroup?: string[] };
    };
    assert.deepEqual(view.config.hostCgroup, mounted);
  });
});
