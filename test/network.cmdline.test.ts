// The netns network on QEMU's command line and from sandboxctl's flags, without running anything.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { networkConfig } from '../src/cli/network.js';
import { InvalidArgument } from '../src/errors/index.js';
import { qemuArgs, SPARE_NIC_PORTS, type VmConfig } from '../src/hypervisor/index.js';

const config: VmConfig = {
  sandboxId: 'sb1',
  stateDir: '/run/sbx/sb1/vm',
  sharedDir: '/run/sbx/sb1/shared',
  image: { kernel: '/img/vmlinuz', initrd: '/img/initrd.gz', rootDir: '/img/root', version: 'v1' },
  vcpus: 1,
  maxVcpus: 4,
  memoryMiB: 512,
  maxMemoryMiB: 4096,
};
const valuesOf = (args: readonly string[], flag: string) =>
  args.flatMap((arg, i) => (arg === flag ? [args[i + 1]!] : []));

describe('a netns network on the QEMU command line', () => {
  it('opens each tap by name with no scripts, behind a virtio NIC with the veth’s MAC', () => {
    const args = qemuArgs(
      {
        ...config,
        network: {
          mode: 'netns',
          path: '/run/netns/pod',
          nics: [
            { tap: 'sbx0123abcdt0', mac: 'ba:78:82:ea:ae:6c' },
            { tap: 'sbx0123abcdt1', mac: 'ba:78:82:ea:ae:6d' },
          ],
        },
      },
      'tcg',
    );
    assert.deepEqual(valuesOf(args, '-netdev'), [
      'tap,id=net-sbx0123abcdt0,ifname=sbx0123abcdt0,script=no,downscript=no',
      'tap,id=net-sbx0123abcdt1,ifname=sbx0123abcdt1,script=no,downscript=no',
    ]);
    assert.deepEqual(
      valuesOf(args, '-device').filter((d) => d.startsWith('virtio-net-pci')),
      [
        'virtio-net-pci,id=nic-sbx0123abcdt0,netdev=net-sbx0123abcdt0,mac=ba:78:82:ea:ae:6c,bus=nicport0',
        'virtio-net-pci,id=nic-sbx0123abcdt1,netdev=net-sbx0123abcdt1,mac=ba:78:82:ea:ae:6d,bus=nicport1',
      ],
    );
    // Each NIC on a root port of its own (q35's root bus cannot unplug), and spare ports for later ones.
    assert.equal(
      valuesOf(args, '-device').filter((d) => d.startsWith('pcie-root-port')).length,
      2 + SPARE_NIC_PORTS,
    );
    assert.ok(!args.some((a) => a.startsWith('user,')), 'no slirp');
  });

  it('refuses a bad tap name or MAC, naming the NIC', () => {
    const bad = (nic: { tap: string; mac: string }, field: string) =>
      assert.throws(
        () => qemuArgs({ ...config, network: { mode: 'netns', path: '/run/netns/p', nics: [nic] } }, 'tcg'),
        (err: unknown) => err instanceof InvalidArgument && err.field === field,
      );
    bad({ tap: 'tap,script=/x', mac: 'ba:78:82:ea:ae:6c' }, 'network.nics[0].tap');
    bad({ tap: 'sbx0123abcdt0', mac: 'nope' }, 'network.nics[0].mac');
  });
});

describe('sandboxctl --netns', () => {
  it('asks for network {mode: netns, path}, the path made absolute', () => {
    assert.deepEqual(networkConfig({ netns: '/run/netns/pod' }), {
      network: { mode: 'netns', path: '/run/netns/pod' },
    });
    assert.deepEqual(networkConfig({ netns: 'rel/ns' }).network, {
      mode: 'netns',
      path: `${process.cwd()}/rel/ns`,
    });
  });
});
