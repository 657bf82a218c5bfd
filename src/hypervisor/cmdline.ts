// The QEMU command line of a sandbox VM and the file layout of its state dir: pure, so it can be tested without QEMU.
import { join } from 'node:path';
import { InvalidArgument } from '../errors/index.js';
import { accelArgs } from './accel.js';
import type { Accel, VmConfig } from './types.js';

/** 9p mount tag of the read-only guest root (the image's rootDir). Part of the guest contract (src/image). */
export const GUEST_ROOT_TAG = 'sbxroot';
/** 9p mount tag of the writable per-sandbox share (bundles). Part of the guest contract (src/image). */
export const SANDBOX_SHARE_TAG = 'sbxshared';
/** virtio-serial port name the guest agent opens. Part of the guest contract (src/image). */
export const AGENT_PORT_NAME = 'agent.channel.0';

/** Where a VM keeps its files; all under VmConfig.stateDir. */
export interface VmPaths {
  readonly stateDir: string;
  readonly qmpSocket: string;
  readonly agentSocket: string;
  readonly consoleLog: string;
  readonly pidFile: string;
}

/** sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

/** File layout of a VM's state dir. Throws InvalidArgument('stateDir') if a socket path would not fit sun_path. */
export function vmPaths(stateDir: string): VmPaths {
  const paths: VmPaths = {
    stateDir,
    qmpSocket: join(stateDir, 'qmp.sock'),
    agentSocket: join(stateDir, 'agent.sock'),
    consoleLog: join(stateDir, 'console.log'),
    pidFile: join(stateDir, 'qemu.pid'),
  };
  for (const socket of [paths.qmpSocket, paths.agentSocket]) {
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

/** Number of DIMM slots offered for memory hotplug when max memory exceeds boot memory. */
export const MEMORY_SLOTS = 4;

/**
 * Arguments for `qemu-system-x86_64` (without the binary). The VM daemonizes itself once its
 * monitor and sockets are ready, so it outlives the daemon; nothing ties it to our stdio.
 * Throws InvalidArgument for impossible sizes or too long socket paths.
 */
export function qemuArgs(config: VmConfig, accel: Accel): string[] {
  validateSizes(config);
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
    // The guest root: read-only, shared by every sandbox of this image.
    '-fsdev',
    `local,id=${GUEST_ROOT_TAG},path=${optionValue(config.image.rootDir)},security_model=none,readonly=on`,
    '-device',
    `virtio-9p-pci,fsdev=${GUEST_ROOT_TAG},mount_tag=${GUEST_ROOT_TAG}`,
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
    // Entropy, so early getrandom() in the guest never waits.
    '-object',
    'rng-random,id=rng0,filename=/dev/urandom',
    '-device',
    'virtio-rng-pci,rng=rng0',
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
    '-daemonize',
  ];
}
