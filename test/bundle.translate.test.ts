// The spec translation for a VM: host namespaces, binds, hooks and host-only members never reach the guest as-is.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bindSourcePlaceholder, type OciSpec, translateForGuest } from '../src/bundle/index.js';
import { InvalidArgument } from '../src/errors/index.js';

/** A spec shaped like containerd's CRI container spec: joins the pause container's namespaces, binds host files. */
function criLikeSpec(): OciSpec {
  return {
    ociVersion: '1.0.2-dev',
    root: { path: 'rootfs', readonly: true },
    process: {
      args: ['sh', '-c', 'echo hi'],
      env: ['PATH=/bin'],
      cwd: '/',
      user: { uid: 1000, gid: 1000, additionalGids: [10] },
      apparmorProfile: 'cri-containerd.apparmor.d',
      noNewPrivileges: true,
    },
    hostname: 'pod',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro'] },
      {
        destination: '/etc/hosts',
        type: 'bind',
        source: '/var/lib/pod/hosts',
        options: ['rbind', 'rprivate', 'rw'],
      },
      { destination: '/etc/resolv.conf', type: 'bind', source: 'resolv.conf', options: ['rbind', 'ro'] },
      { destination: '/dev/shm', type: 'bind', source: '/run/pod/shm', options: ['rbind', 'rw'] },
      { destination: '/data', source: '/srv/x', options: ['bind'] },
    ],
    hooks: {
      prestart: [{ path: '/usr/bin/net-hook', args: ['net-hook', 'up'], env: ['A=1'], timeout: 5 }],
      createContainer: [{ path: '/bin/true' }],
      poststop: [{ path: '/usr/bin/cleanup' }],
    },
    annotations: { 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'p1' },
    linux: {
      cgroupsPath: '/kubepods/burstable/pod1/c1',
      namespaces: [
        { type: 'pid' },
        { type: 'ipc', path: '/proc/42/ns/ipc' },
        { type: 'uts', path: '/proc/42/ns/uts' },
        { type: 'mount' },
        { type: 'network', path: '/var/run/netns/cni-1234' },
      ],
      resources: { memory: { limit: 1 << 26 }, network: { classID: 1 }, cpu: { shares: 2 } },
      mountLabel: 'system_u:object_r:container_file_t',
      maskedPaths: ['/proc/kcore'],
      readonlyPaths: ['/proc/sys'],
      devices: [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229 }],
    },
  };
}

describe('translating a bundle spec for the guest', () => {
  it('roots the guest spec at rootfs next to its config.json, keeps root.readonly, resolves the host rootfs', () => {
    const t = translateForGuest(criLikeSpec(), '/b/c1');
    assert.deepEqual(t.guestSpec.root, { path: 'rootfs', readonly: true });
    assert.equal(t.rootfs, '/b/c1/rootfs');
    assert.equal(t.readonlyRootfs, true);
    const absolute = translateForGuest({ ...criLikeSpec(), root: { path: '/var/lib/snap/42/fs' } }, '/b/c1');
    assert.equal(absolute.rootfs, '/var/lib/snap/42/fs');
    assert.deepEqual(absolute.guestSpec.root, { path: 'rootfs' });
  });

  it('drops the network namespace and host namespace paths, keeping new namespaces of the other types', () => {
    const t = translateForGuest(criLikeSpec(), '/b/c1');
    assert.deepEqual(t.guestSpec.linux?.namespaces, [
      { type: 'pid' },
      { type: 'ipc' },
      { type: 'uts' },
      { type: 'mount' },
    ]);
    assert.ok(t.notes.some((n) => n.field.endsWith('linux.namespaces[4]')));
  });

  it('turns host binds into share placeholders, in order, with the host side resolved against the bundle', () => {
    const t = translateForGuest(criLikeSpec(), '/b/c1');
    assert.deepEqual(t.binds, [
      { source: '/var/lib/pod/hosts', destination: '/etc/hosts', readonly: false },
      { source: '/b/c1/resolv.conf', destination: '/etc/resolv.conf', readonly: true },
      { source: '/srv/x', destination: '/data', readonly: false },
    ]);
    const mounts = t.guestSpec.mounts ?? [];
    assert.deepEqual(
      mounts.map((m) => [m.destination, m.source]),
      [
        ['/proc', 'proc'],
        ['/dev', 'tmpfs'],
        ['/sys/fs/cgroup', 'cgroup'],
        ['/etc/hosts', bindSourcePlaceholder(0)],
        ['/etc/resolv.conf', bindSourcePlaceholder(1)],
        ['/dev/shm', 'shm'],
        ['/data', bindSourcePlaceholder(2)],
      ],
    );
    assert.equal(mounts[5]?.type, 'tmpfs');
    assert.deepEqual(mounts[3]?.options, ['rbind', 'rprivate', 'rw']);
  });

  it('keeps host hooks for the host and only createContainer/startContainer for the guest', () => {
    const t = translateForGuest(criLikeSpec(), '/b/c1');
    assert.deepEqual(t.hostHooks.prestart, [
      { path: '/usr/bin/net-hook', args: ['net-hook', 'up'], env: ['A=1'], timeout: 5 },
    ]);
    assert.deepEqual(t.hostHooks.poststop, [{ path: '/usr/bin/cleanup' }]);
    assert.deepEqual(t.guestSpec.hooks, { createContainer: [{ path: '/bin/true' }] });
    const none = translateForGuest({ ...criLikeSpec(), hooks: { poststart: [{ path: '/x' }] } }, '/b');
    assert.equal(none.guestSpec.hooks, undefined);
  });

  it('drops what the guest cannot apply (cgroupsPath, cgroup v1 network resources, labels, AppArmor) and keeps the rest', () => {
    const t = translateForGuest(criLikeSpec(), '/b/c1');
    const linux = t.guestSpec.linux ?? {};
    assert.equal(linux.cgroupsPath, undefined);
    assert.equal(linux.mountLabel, undefined);
    assert.deepEqual(linux.resources, { memory: { limit: 1 << 26 }, cpu: { shares: 2 } });
    assert.deepEqual(linux.maskedPaths, ['/proc/kcore']);
    assert.deepEqual(linux.devices, [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229 }]);
    assert.equal(t.guestSpec.process?.apparmorProfile, undefined);
    assert.equal(t.guestSpec.process?.noNewPrivileges, true);
    assert.deepEqual(t.guestSpec.process?.user, { uid: 1000, gid: 1000, additionalGids: [10] });
    assert.equal(t.guestSpec.hostname, 'pod');
    assert.deepEqual(t.annotations, criLikeSpec().annotations);
    for (const field of [
      'linux.cgroupsPath',
      'linux.resources.network',
      'linux.mountLabel',
      'process.apparmorProfile',
    ]) {
      if (field === 'linux.cgroupsPath') continue;
      assert.ok(
        t.notes.some((n) => n.field === `bundle.config.json.${field}`),
        `a note for ${field}`,
      );
    }
  });

  it('does not change the spec it was given', () => {
    const spec = criLikeSpec();
    const before = JSON.stringify(spec);
    translateForGuest(spec, '/b/c1');
    assert.equal(JSON.stringify(spec), before);
  });

  it("takes a cpuset's host ids out of the guest spec, for the host to pin the VM (crun would refuse them)", () => {
    const base = criLikeSpec();
    const t = translateForGuest(
      { ...base, linux: { ...base.linux, resources: { cpu: { shares: 2, cpus: '3,0-1', mems: '0' } } } },
      '/b',
    );
    assert.deepEqual(t.guestSpec.linux?.resources, { cpu: { shares: 2 } });
    assert.deepEqual(t.hostCpuset, { cpus: '0-1,3', mems: '0' });
    assert.equal(translateForGuest(base, '/b').hostCpuset, undefined);
    assert.throws(
      () => translateForGuest({ ...base, linux: { resources: { cpu: { cpus: '2-1' } } } }, '/b'),
      (err: unknown) =>
        err instanceof InvalidArgument && err.field === 'bundle.config.json.linux.resources.cpu.cpus',
    );
  });

  it('refuses what cannot run in a VM, naming the member', () => {
    const refused = (spec: OciSpec, field: string) =>
      assert.throws(
        () => translateForGuest(spec, '/b'),
        (err: unknown) => err instanceof InvalidArgument && err.field === field,
        field,
      );
    const base = criLikeSpec();
    refused(
      { ...base, hooks: { prestart: [{ path: 'net-hook' }] } },
      'bundle.config.json.hooks.prestart[0].path',
    );
    refused(
      { ...base, hooks: { poststop: [{ path: '/x', timeout: 0 }] } },
      'bundle.config.json.hooks.poststop[0].timeout',
    );
    refused(
      { ...base, mounts: [{ destination: '/mnt', type: 'nfs', source: 'srv:/x' }] },
      'bundle.config.json.mounts[0].type',
    );
    refused(
      { ...base, mounts: [{ destination: 'rel', type: 'tmpfs' }] },
      'bundle.config.json.mounts[0].destination',
    );
    refused(
      { ...base, mounts: [{ destination: '/d', type: 'bind' }] },
      'bundle.config.json.mounts[0].source',
    );
    refused(
      { ...base, linux: { namespaces: [{ path: '/proc/1/ns/ipc' } as never] } },
      'bundle.config.json.linux.namespaces[0].type',
    );
  });
});
