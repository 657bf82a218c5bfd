// The guest and host sides of a sandbox on a network namespace, as the sandbox effects use them.
import type { Logger } from 'pino';
import type { Agent } from '../agent/index.js';
import { AgentError } from '../errors/index.js';
import type { SandboxEventData } from '../events/index.js';
import { USER_NETWORK } from '../hypervisor/index.js';
import {
  changesMadeBefore,
  type DnsConfig,
  detachNetns,
  dnsOf,
  type NetnsChange,
  type NetnsWiring,
} from '../network/index.js';
import type { SandboxActor } from './entity.js';
import type { SandboxConfig } from './types.js';

/** The network namespace a sandbox's VM is plugged into, if its config names one. */
export function netnsOf(config: Pick<SandboxConfig, 'network'>): string | undefined {
  return typeof config.network === 'object' ? config.network.path : undefined;
}

/**
 * The guest's resolver config: the sandbox config's, else its namespace's /etc/netns/NAME/resolv.conf (read when
 * it was wired), else QEMU's own resolver on the user network; undefined leaves the guest's resolv.conf alone.
 */
export function guestDnsOf(
  config: Pick<SandboxConfig, 'dns' | 'network'>,
  wiring: NetnsWiring | undefined,
): DnsConfig | undefined {
  return (
    dnsOf(config.dns) ??
    wiring?.dns ??
    (config.network === 'user' ? { servers: [USER_NETWORK.dns], searches: [], options: [] } : undefined)
  );
}

/**
 * Gives each guest NIC its veth's addresses and MTU, and the guest the namespace's routes. The guest names its
 * NICs itself: each is found by the MAC QEMU gave it (the veth's). Idempotent: a retried start redoes it.
 */
export async function configureNetnsNetwork(
  agent: Agent,
  sandboxId: string,
  wiring: NetnsWiring,
): Promise<void> {
  const guest = await agent.listInterfaces(sandboxId);
  const names = new Map<string, string>();
  for (const link of wiring.links) {
    const nic = guest.find((i) => i.mac?.toLowerCase() === link.mac.toLowerCase());
    if (!nic) throw new AgentError('updateInterface', `no guest NIC has the MAC ${link.mac} of ${link.veth}`);
    names.set(link.veth, nic.name);
    await agent.updateInterface(sandboxId, {
      name: nic.name,
      addresses: link.addresses,
      mtu: link.mtu,
      up: true,
    });
  }
  // Routes through a device the VM has no NIC for cannot be given to the guest.
  const routes = wiring.routes
    .filter((r) => r.device === undefined || names.has(r.device))
    .map((r) => ({
      dest: r.dest,
      ...(r.gateway ? { gateway: r.gateway } : {}),
      ...(r.device ? { device: names.get(r.device) as string } : {}),
      ...(r.source ? { source: r.source } : {}),
    }));
  if (routes.length > 0) await agent.updateRoutes(sandboxId, routes);
}

const turns = new WeakMap<SandboxActor, Promise<unknown>>();

/**
 * Runs `work` once every change to the sandbox's namespace asked before it has ended: the release after a VM
 * died (started by the kernel, unasked) and a delete, a start or recovery never plan from one reading of the
 * namespace and then remove the same tap twice.
 */
export function inNetnsTurn<T>(sandbox: SandboxActor, work: () => Promise<T>): Promise<T> {
  const run = (turns.get(sandbox) ?? Promise.resolve()).then(work, work);
  turns.set(
    sandbox,
    run.catch(() => undefined),
  );
  return run;
}

/** A SandboxNetworkReleased outcome, as an effect returns it (none when nothing of the sandbox's was there). */
export type NetworkReleased = {
  type: 'SandboxNetworkReleased';
  data: SandboxEventData['SandboxNetworkReleased'];
};

/**
 * Takes the sandbox's taps and filters out of its namespace (no-op without one, or when it is gone) and returns
 * the release as an event for the effect to record with its outcome, so a stop's or a delete's host changes are
 * in the log as recovery's are. A failure is logged and what was removed before it is still returned; with
 * `mustSucceed` (a delete, which may be retried) it is thrown instead.
 */
export async function unwire(
  logger: Logger,
  sandbox: SandboxActor,
  reason: string,
  mustSucceed = false,
): Promise<NetworkReleased[]> {
  const path = netnsOf(sandbox.context.config);
  if (!path) return [];
  let changes: NetnsChange[];
  try {
    changes = await inNetnsTurn(sandbox, () => detachNetns(path, sandbox.id, logger));
  } catch (err) {
    if (mustSucceed) throw err;
    logger.warn({ err, sandboxId: sandbox.id, netns: path, step: 'netns detach' }, 'unwiring failed');
    changes = changesMadeBefore(err);
  }
  return changes.length === 0 ? [] : [{ type: 'SandboxNetworkReleased', data: { path, reason, changes } }];
}
