// The QEMU command line of a sandbox VM and the file layout of its state dir: pure, so it can be tested without QEMU.
import { join } from 'node:path';
import { InvalidArgument } from '../errors/index.js';
import { accelArgs } from './accel.js';
import { tapArgs } from './nics.js';
import type { Accel, PortForward, VmConfig, VmNetwork, VmUserNetwork } from './types.js';

/**
 * Name of the read-only guest root: the virtio-blk serial of the image's rootImage (the guest finds the disk by
 * it), or the 9p mount tag of rootDir for an image without one. Part of the guest contract (src/image).
 */
export const GUEST_ROOT_TAG = 'sbxroot';
/** 9p mount tag of the writable per-sandbox share (bundles). Part of the guest contract (src/image). */
export const SANDBOX_SHARE_TAG = 'sbxshared';
/** virtio-serial port name the guest agent opens. Part of the guest contract (src/image). */
export const AGENT_PORT_NAME = 'agent.channel.0';
/** virtio-serial port of process output (guest to host, frames; src/agent/wire.ts). Part of the guest contract. */
export const OUTPUT_PORT_NAME = 'agent.output.0';

/** Where a VM keeps its files; all under VmConfig.stateDir. */
export interface VmPaths {
  readonly stateDir: string;
  readonly qmpSocket: string;
  readonly agentSocket: string;
  readonly outputSocket: string;
  readonly consoleLog: string;
  readonly pidFile: string;
  /** Where sandboxd-qemu-reaper writes how QEMU ended. */
  readonly exitStatus: string;
}

/** sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

/** File layout of a VM's state dir. Throws InvalidArgument('stateDir') if a socket path would not fit sun_path. */
export function vmPaths(stateDir: string): VmPaths {
  const paths: VmPaths = {
    stateDir,
    qmpSocket: join(stateDir, 'qmp.sock'),
    agentSocket: join(stateDir, 'agent.sock'),
    outputSocket: join(stateDir, 'output.sock'),
    consoleLog: join(stateDir, 'console.log'),
    pidFile: join(stateDir, 'qemu.pid'),
    exitStatus: join(stateDir, 'qemu.exit'),
  };
  for (const socket of [paths.qmpSocket, paths.agentSocket, paths.outputSocket]) {
    if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) {
      throw new InvalidArgument('stateDir', `socket path ${socket} exceeds ${MAX_SOCKET_PATH_BYTES} bytes`);
    }
  }
  return paths;
}

/**
 * The kernel command line: console and panic behaviour, then the caller's extras (the guest contract's
 * `sandboxd.*` keys, documented at the top of src/image/guest-init.sh).
 */
export function kernelCommandLine(config: VmConfig): string {
  return [
    'console=ttyS0',
    'quiet',
    // panic=-1 reboots at once and -no-reboot turns that into QEMU's exit: a panicked guest ends as `exited`.
    'panic=-1',
    ...(config.kernelParams ?? []),
  ].join(' ');
}

/** QEMU option values are comma-separated: a literal comma is written twice. */
function optionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The vmgenid device of a template or clone: QEMU writes a new id into the guest after a restore. */
function vmGenerationArgs(config: VmConfig): string[] {
  const id = config.vmGenerationId;
  if (id === undefined) return [];
  if (!UUID.test(id)) throw new InvalidArgument('vmGenerationId', 'must be a UUID');
  return ['-device', `vmgenid,guid=${id}`];
}

function validateSizes(config: VmConfig): void {
  const integer = (field: string, value: number, min: number): void => {
    if (!Number.isInteger(value) || value < min)
      throw new InvalidArgument(field, `must be an integer ≥ ${min}`);
  };
  integer('vcpus', config.vcpus, 1);
  integer('maxVcpus', config.maxVcpus, config.vcpus);
  integer('memoryMiB', config.memoryMiB, 64);
  integer('maxMemoryMiB', config.maxMemoryMiB, config.memoryMiB);
  if (config.maxVcpus > 255) throw new InvalidArgument('maxVcpus', 'must be ≤ 255');
}

/**
 * The user network as the guest sees it: QEMU's slirp defaults, spelled out so that the command line and the
 * agent's interface setup (src/actors) agree. Part of the guest contract.
 */
export const USER_NETWORK = {
  interface: 'eth0',
  net: '10.0.2.0/24',
  guestAddress: '10.0.2.15/24',
  gateway: '10.0.2.2',
  dns: '10.0.2.3',
  mac: '52:54:00:12:34:56',
} as const;

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

function validateNetwork(network: VmNetwork): void {
  if (network.mode === 'netns') {
    if (network.nics.length === 0) throw new InvalidArgument('network.nics', 'needs at least one NIC');
    for (const [i, nic] of network.nics.entries()) {
      if (!IFNAME.test(nic.tap))
        throw new InvalidArgument(`network.nics[${i}].tap`, 'must be an interface name');
      if (!MAC.test(nic.mac)) throw new InvalidArgument(`network.nics[${i}].mac`, 'must be a MAC address');
    }
    return;
  }
  const taken: PortForward[] = [];
  for (const [i, port] of network.ports.entries()) {
    const field = `network.ports[${i}]`;
    if (port.protocol !== 'tcp' && port.protocol !== 'udp')
      throw new InvalidArgument(`${field}.protocol`, 'must be tcp or udp');
    if (!IPV4.test(port.hostAddress))
      throw new InvalidArgument(`${field}.hostAddress`, 'must be an IPv4 address');
    for (const key of ['hostPort', 'guestPort'] as const) {
      if (!Number.isInteger(port[key]) || port[key] < 1 || port[key] > 65535)
        throw new InvalidArgument(`${field}.${key}`, 'must be a port number 1..65535');
    }
    // 0.0.0.0 takes the port on every address: it clashes with any other forward of that port.
    const clash = taken.find(
      (t) =>
        t.protocol === port.protocol &&
        t.hostPort === port.hostPort &&
        (t.hostAddress === port.hostAddress || t.hostAddress === '0.0.0.0' || port.hostAddress === '0.0.0.0'),
    );
    if (clash) {
      throw new InvalidArgument(
        `${field}.hostPort`,
        `${port.protocol} port ${port.hostPort} is already forwarded from ${clash.hostAddress}`,
      );
    }
    taken.push(port);
  }
}

/** `-netdev user` with the forwarded ports, and its virtio NIC; taps for a netns; nothing without a network. */
function networkArgs(network: VmNetwork | undefined): string[] {
  if (!network) return [];
  if (network.mode === 'netns') return tapArgs(network);
  return userArgs(network);
}

function userArgs(network: VmUserNetwork): string[] {
  const forwards = network.ports.map(
    (p) => `hostfwd=${p.protocol}:${p.hostAddress}:${p.hostPort}-:${p.guestPort}`,
  );
  return [
    '-netdev',
    [
      'user',
      'id=net0',
      `net=${USER_NETWORK.net}`,
      `host=${USER_NETWORK.gateway}`,
      `dns=${USER_NETWORK.dns}`,
      ...forwards,
    ].join(','),
    '-device',
    `virtio-net-pci,netdev=net0,mac=${USER_NETWORK.mac}`,
  ];
}

/**
 * The guest root, read-only and shared by every sandbox of this image: a virtio-blk disk on the erofs image
 * (it migrates, so a booted VM can be saved as a template), else the 9p share of the root dir.
 */
function guestRootArgs(config: VmConfig): string[] {
  const image = config.image.rootImage;
  if (image === undefined) {
    return [
      '-fsdev',
      `local,id=${GUEST_ROOT_TAG},path=${optionValue(config.image.rootDir)},security_model=none,readonly=on`,
      '-device',
      `virtio-9p-pci,fsdev=${GUEST_ROOT_TAG},mount_tag=${GUEST_ROOT_TAG}`,
    ];
  }
  return [
    '-drive',
    `file=${optionValue(image)},if=none,id=${GUEST_ROOT_TAG},format=raw,readonly=on`,
    '-device',
    `virtio-blk-pci,drive=${GUEST_ROOT_TAG},serial=${GUEST_ROOT_TAG}`,
  ];
}

/** Number of DIMM slots offered for memory hotplug when max memory exceeds boot memory. */
export const MEMORY_SLOTS = 4;

/**
 * Arguments for `qemu-system-x86_64` (without the binary). The VM daemonizes itself once its
 * monitor and sockets are ready, so it outlives the daemon; nothing ties it to our stdio.
 * Throws InvalidArgument for impossible sizes or too long socket paths.
 */
export function qemuArgs(config: VmConfig, accel: Accel): string[] {
  validateSizes(config);
  if (config.network) validateNetwork(config.network);
  const paths = vmPaths(config.stateDir);
  const memory =
    config.maxMemoryMiB > config.memoryMiB
      ? `${config.memoryMiB}M,slots=${MEMORY_SLOTS},maxmem=${config.maxMemoryMiB}M`
      : `${config.memoryMiB}M`;
  return [
    '-name',
    optionValue(`sandbox-${config.sandboxId}`),
    '-machine',
    'q35',
    ...accelArgs(accel),
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-m',
    memory,
    '-smp',
    `${config.vcpus},maxcpus=${config.maxVcpus}`,
    '-kernel',
    config.image.kernel,
    '-initrd',
    config.image.initrd,
    '-append',
    kernelCommandLine(config),
    ...guestRootArgs(config),
    // The sandbox share: QEMU runs as root and security_model=none passes ownership and modes through
    // unmapped, so bundles prepared on the host look the same to crun in the guest.
    '-fsdev',
    `local,id=${SANDBOX_SHARE_TAG},path=${optionValue(config.sharedDir)},security_model=none`,
    '-device',
    `virtio-9p-pci,fsdev=${SANDBOX_SHARE_TAG},mount_tag=${SANDBOX_SHARE_TAG}`,
    // The agent channel: virtio-serial to a unix socket; wait=off lets QEMU start before a host connects.
    '-device',
    'virtio-serial-pci,id=vser0',
    '-chardev',
    `socket,id=agent,path=${optionValue(paths.agentSocket)},server=on,wait=off`,
    '-device',
    `virtserialport,bus=vser0.0,chardev=agent,name=${AGENT_PORT_NAME}`,
    // Process output skips gRPC on a port of its own (guest to host frames: src/agent/wire.ts).
    '-chardev',
    `socket,id=output,path=${optionValue(paths.outputSocket)},server=on,wait=off`,
    '-device',
    `virtserialport,bus=vser0.0,chardev=output,name=${OUTPUT_PORT_NAME}`,
    // Entropy, so early getrandom() in the guest never waits.
    '-object',
    'rng-random,id=rng0,filename=/dev/urandom',
    '-device',
    'virtio-rng-pci,rng=rng0',
    ...networkArgs(config.network),
    ...vmGenerationArgs(config),
    '-chardev',
    `socket,id=qmp,path=${optionValue(paths.qmpSocket)},server=on,wait=off`,
    '-mon',
    'chardev=qmp,mode=control',
    '-chardev',
    `file,id=console,path=${optionValue(paths.consoleLog)}`,
    '-serial',
    'chardev:console',
    '-pidfile',
    paths.pidFile,
    ...(config.incoming ? ['-incoming', 'defer'] : []),
    '-daemonize',
  ];
}
