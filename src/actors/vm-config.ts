// What a sandbox config asks of QEMU: the VM's shape (sizes, hotplug limits) and its user network.

import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import type { Agent } from '../agent/index.js';
import { HypervisorError, InvalidArgument } from '../errors/index.js';
import { type PortForward, USER_NETWORK, type VmUserNetwork } from '../hypervisor/index.js';
import type { VmTemplateShape } from './runtime-options.js';
import type { SandboxConfig } from './types.js';

/** Defaults sized for TCG guests on a loaded 2-core machine (GUEST.md: boots take 5–20 s). */
export const defaultVmShape = { vcpus: 1, maxVcpus: 4, memoryMiB: 512, maxMemoryMiB: 4096 } as const;

/** The VM size a sandbox config boots with, and how far hotplug may grow it. */
export interface VmShape {
  readonly vcpus: number;
  readonly maxVcpus: number;
  readonly memoryMiB: number;
  readonly maxMemoryMiB: number;
}

/** The VM network for `config`, defaults filled in; undefined (no NIC) unless network is 'user'. */
export function vmNetworkOf(config: Pick<SandboxConfig, 'network' | 'ports'>): VmUserNetwork | undefined {
  if (config.network !== 'user') return undefined;
  return {
    mode: 'user',
    ports: (config.ports ?? []).map((p) => ({
      protocol: p.protocol ?? 'tcp',
      hostAddress: p.hostAddress ?? '127.0.0.1',
      hostPort: p.hostPort,
      guestPort: p.guestPort,
    })),
  };
}

/** Whether this host can bind `port` right now (what QEMU's hostfwd will do); the errno when not. */
function bindProblem(port: PortForward): Promise<string | undefined> {
  return new Promise((resolve) => {
    const fail = (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message);
    if (port.protocol === 'udp') {
      const probe = createSocket('udp4');
      probe.once('error', fail);
      probe.bind({ port: port.hostPort, address: port.hostAddress, exclusive: true }, () =>
        probe.close(() => resolve(undefined)),
      );
      return;
    }
    const probe = createServer();
    probe.once('error', fail);
    probe.listen({ port: port.hostPort, host: port.hostAddress, exclusive: true }, () =>
      probe.close(() => resolve(undefined)),
    );
  });
}

/**
 * Fails naming the port when a host port to forward cannot be bound: QEMU would exit with only "could not set
 * up host forwarding rule". `asArgument`: as InvalidArgument naming config.ports[i].hostPort (a check before
 * anything is recorded); otherwise as the launch's HypervisorError (the port was taken since).
 */
export async function checkHostPortsFree(network: VmUserNetwork, asArgument = false): Promise<void> {
  for (const [i, port] of network.ports.entries()) {
    const problem = await bindProblem(port);
    if (problem === undefined) continue;
    const what = `host port ${port.hostAddress}:${port.hostPort}/${port.protocol} cannot be forwarded: ${problem}`;
    if (asArgument) throw new InvalidArgument(`config.ports.${i}.hostPort`, what);
    throw new HypervisorError('forward ports', what, { hostPort: port.hostPort });
  }
}

/** Gives the guest's NIC the user network's address and default route (idempotent: a retried start redoes it). */
export async function configureUserNetwork(agent: Agent, sandboxId: string): Promise<void> {
  await agent.updateInterface(sandboxId, {
    name: USER_NETWORK.interface,
    addresses: [USER_NETWORK.guestAddress],
    up: true,
  });
  await agent.updateRoutes(sandboxId, [
    { dest: 'default', gateway: USER_NETWORK.gateway, device: USER_NETWORK.interface },
  ]);
}

/** What launchVm gives QEMU for `config`: its sizes, defaults filled in, limits never below the boot size. */
export function vmShapeOf(config: {
  readonly vcpus?: number;
  readonly maxVcpus?: number;
  readonly memoryMiB?: number;
  readonly maxMemoryMiB?: number;
}): VmShape {
  const vcpus = config.vcpus ?? defaultVmShape.vcpus;
  const memoryMiB = config.memoryMiB ?? defaultVmShape.memoryMiB;
  return {
    vcpus,
    maxVcpus: Math.max(vcpus, config.maxVcpus ?? defaultVmShape.maxVcpus),
    memoryMiB,
    maxMemoryMiB: Math.max(memoryMiB, config.maxMemoryMiB ?? defaultVmShape.maxMemoryMiB),
  };
}

/**
 * The template shape a sandbox config would be restored from; undefined for a netns sandbox (its NIC carries the
 * veth's MAC in a template's migrated state, so it always boots cold). A `user` VM's NIC has the same MAC in
 * every VM (QEMU's default; each slirp network is private to its VM), so a clone's is what a cold boot's is.
 */
export function templateShapeOf(config: SandboxConfig): VmTemplateShape | undefined {
  if (typeof config.network === 'object') return undefined;
  return { ...vmShapeOf(config), network: config.network === 'user' ? 'user' : 'none' };
}
