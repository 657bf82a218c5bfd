// What podman's bundles need from the guest translation: its net.* sysctls (net.ipv4.ping_group_range) are
// dropped, since the container shares the VM's network namespace and crun refuses them there; others stay.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type OciSpec, translateForGuest } from '../src/bundle/index.js';

describe('guest translation of a podman-shaped spec', () => {
  it('drops net.* sysctls with a note and keeps the others', () => {
    const spec = {
      ociVersion: '1.0.2-dev',
      root: { path: 'rootfs' },
      process: { args: ['echo', 'hi'], cwd: '/' },
      linux: {
        namespaces: [{ type: 'pid' }, { type: 'network', path: '/run/netns/x' }],
        sysctl: { 'net.ipv4.ping_group_range': '0 0', 'kernel.shm_rmid_forced': '1' },
      },
    } as unknown as OciSpec;
    const t = translateForGuest(spec, '/b/p');
    const linux = t.guestSpec.linux as { sysctl: Record<string, string>; namespaces: { type: string }[] };
    assert.deepEqual(linux.sysctl, { 'kernel.shm_rmid_forced': '1' });
    assert.deepEqual(linux.namespaces, [{ type: 'pid' }]);
    assert.ok(t.notes.some((n) => n.field.endsWith('linux.sysctl.net.ipv4.ping_group_range')));
  });
});
