// The QEMU command line and state-dir layout of a sandbox VM, and the accelerator override, without running QEMU.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgument } from '../src/errors/index.js';
import { accelFromEnv, type PortForward, qemuArgs, type VmConfig, vmPaths } from '../src/hypervisor/index.js';

const config: VmConfig = {
  sandboxId: 'sb1',
  stateDir: '/run/sbx/sb1/vm',
  sharedDir: '/run/sbx/sb1/shared',
  image: { kernel: '/img/vmlinuz', initrd: '/img/initrd.gz', rootDir: '/img/root', version: 'v1' },
  vcpus: 1,
  maxVcpus: 4,
  memoryMiB: 512,
  maxMemoryMiB: 4096,
  kernelParams: ['sandboxd.hostname=web'],
};

/** The value following a flag, for each occurrence of the flag. */
function valuesOf(args: readonly string[], flag: string): string[] {
  return args.flatMap((arg, i) => (arg === flag ? [args[i + 1]!] : []));
}

describe('QEMU command line of a sandbox VM', () => {
  it('sizes memory and vCPUs with room for hotplug', () => {
    const args = qemuArgs(config, 'tcg');
    assert.deepEqual(valuesOf(args, '-m'), ['512M,slots=4,maxmem=4096M']);
    assert.deepEqual(valuesOf(args, '-smp'), ['1,maxcpus=4']);
  });

  it('offers no DIMM slots when max memory equals boot memory', () => {
    assert.deepEqual(valuesOf(qemuArgs({ ...config, maxMemoryMiB: 512 }, 'tcg'), '-m'), ['512M']);
  });

  it('uses TCG with -cpu max, or KVM with -cpu host', () => {
    const tcg = qemuArgs(config, 'tcg');
    assert.deepEqual([valuesOf(tcg, '-accel'), valuesOf(tcg, '-cpu')], [['tcg'], ['max']]);
    const kvm = qemuArgs(config, 'kvm');
    assert.deepEqual([valuesOf(kvm, '-accel'), valuesOf(kvm, '-cpu')], [['kvm'], ['host']]);
  });

  it('shares the image root read-only and the sandbox share writable under the contract tags', () => {
    const fsdevs = valuesOf(qemuArgs(config, 'tcg'), '-fsdev');
    assert.deepEqual(fsdevs, [
      'local,id=sbxroot,path=/img/root,security_model=none,readonly=on',
      'local,id=sbxshared,path=/run/sbx/sb1/shared,security_model=none',
    ]);
    const devices = valuesOf(qemuArgs(config, 'tcg'), '-device');
    assert.ok(devices.includes('virtio-9p-pci,fsdev=sbxroot,mount_tag=sbxroot'));
    assert.ok(devices.includes('virtio-9p-pci,fsdev=sbxshared,mount_tag=sbxshared'));
    assert.ok(devices.includes('virtserialport,bus=vser0.0,chardev=agent,name=agent.channel.0'));
    assert.ok(devices.includes('virtserialport,bus=vser0.0,chardev=output,name=agent.output.0'));
  });

  it('opens the image root image read-only on virtio-blk (serial sbxroot) instead of a 9p root', () => {
    const withImage = { ...config, image: { ...config.image, rootImage: '/img/root,x.erofs' } };
    const args = qemuArgs(withImage, 'tcg');
    assert.deepEqual(valuesOf(args, '-drive'), [
      'file=/img/root,,x.erofs,if=none,id=sbxroot,format=raw,readonly=on',
    ]);
    assert.ok(valuesOf(args, '-device').includes('virtio-blk-pci,drive=sbxroot,serial=sbxroot'));
    assert.deepEqual(valuesOf(args, '-incoming'), []);
    assert.deepEqual(valuesOf(qemuArgs({ ...withImage, incoming: true }, 'tcg'), '-incoming'), ['defer']);
    // Only the sandbox share stays 9p: a mounted 9p root would make the VM refuse migrate (templates).
    assert.deepEqual(valuesOf(args, '-fsdev'), [
      'local,id=sbxshared,path=/run/sbx/sb1/shared,security_model=none',
    ]);
  });

  it('keeps every socket, the console, and the pidfile under the state dir, and daemonizes', () => {
    const args = qemuArgs(config, 'tcg');
    assert.deepEqual(valuesOf(args, '-chardev'), [
      'socket,id=agent,path=/run/sbx/sb1/vm/agent.sock,server=on,wait=off',
      'socket,id=output,path=/run/sbx/sb1/vm/output.sock,server=on,wait=off',
      'socket,id=qmp,path=/run/sbx/sb1/vm/qmp.sock,server=on,wait=off',
      'file,id=console,path=/run/sbx/sb1/vm/console.log',
    ]);
    assert.deepEqual(valuesOf(args, '-pidfile'), ['/run/sbx/sb1/vm/qemu.pid']);
    assert.ok(args.includes('-daemonize') && args.includes('-nodefaults') && args.includes('-no-reboot'));
  });

  it('boots with the console on ttyS0, panics ending the VM, and the caller’s contract keys', () => {
    assert.deepEqual(valuesOf(qemuArgs(config, 'tcg'), '-append'), [
      'console=ttyS0 quiet panic=-1 sandboxd.hostname=web',
    ]);
  });

  it('doubles commas in paths so they cannot inject QEMU options', () => {
    const fsdevs = valuesOf(qemuArgs({ ...config, sharedDir: '/x,readonly=on' }, 'tcg'), '-fsdev');
    assert.equal(fsdevs[1], 'local,id=sbxshared,path=/x,,readonly=on,security_model=none');
  });

  it('refuses impossible sizes, naming the field', () => {
    assert.throws(() => qemuArgs({ ...config, maxVcpus: 0 }, 'tcg'), { field: 'maxVcpus' });
    assert.throws(() => qemuArgs({ ...config, vcpus: 1.5 }, 'tcg'), { field: 'vcpus' });
    assert.throws(() => qemuArgs({ ...config, maxMemoryMiB: 256 }, 'tcg'), { field: 'maxMemoryMiB' });
  });

  it('has no network device unless asked; user networking gets a virtio NIC and the forwarded ports', () => {
    assert.deepEqual(valuesOf(qemuArgs(config, 'tcg'), '-netdev'), []);
    assert.ok(!qemuArgs(config, 'tcg').some((arg) => arg.startsWith('virtio-net')));
    const args = qemuArgs(
      {
        ...config,
        network: {
          mode: 'user',
          ports: [
            { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80 },
            { protocol: 'udp', hostAddress: '0.0.0.0', hostPort: 5353, guestPort: 53 },
          ],
        },
      },
      'tcg',
    );
    assert.deepEqual(valuesOf(args, '-netdev'), [
      'user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,' +
        'hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:0.0.0.0:5353-:53',
    ]);
    assert.ok(valuesOf(args, '-device').includes('virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56'));
  });

  it('refuses forwarded ports that are malformed or taken twice, naming the field', () => {
    const port = { protocol: 'tcp', hostAddress: '127.0.0.1', hostPort: 8080, guestPort: 80 } as const;
    const withPorts = (ports: readonly PortForward[]) =>
      qemuArgs({ ...config, network: { mode: 'user', ports } }, 'tcg');
    assert.throws(() => withPorts([{ ...port, hostPort: 0 }]), { field: 'network.ports[0].hostPort' });
    assert.throws(() => withPorts([{ ...port, guestPort: 70000 }]), { field: 'network.ports[0].guestPort' });
    assert.throws(() => withPorts([{ ...port, hostAddress: 'localhost,restrict=on' }]), {
      field: 'network.ports[0].hostAddress',
    });
    assert.throws(() => withPorts([port, { ...port, guestPort: 81 }]), {
      field: 'network.ports[1].hostPort',
    });
    assert.doesNotThrow(() => withPorts([port, { ...port, protocol: 'udp' }]));
  });

  it('refuses a state dir too long for a unix socket path', () => {
    assert.throws(() => vmPaths(`/${'d'.repeat(100)}`), InvalidArgument);
    assert.equal(vmPaths('/s').qmpSocket, '/s/qmp.sock');
  });
});

describe('SANDBOXD_ACCEL', () => {
  it('forces kvm or tcg, is ignored when unset, and refuses anything else', () => {
    assert.equal(accelFromEnv('kvm'), 'kvm');
    assert.equal(accelFromEnv('tcg'), 'tcg');
    assert.equal(accelFromEnv(undefined), undefined);
    assert.equal(accelFromEnv(''), undefined);
    assert.throws(() => accelFromEnv('hvf'), { field: 'SANDBOXD_ACCEL' });
  });
});
