// Calls on a running sandbox's guest: details, network, time, randomness, files, metrics.
import { randomBytes } from 'node:crypto';
import type { GuestDetails, NetInterface, NetRoute } from '../../agent/index.js';
import { InvalidState } from '../../errors/index.js';
import { can } from '../../machines/index.js';
import type { SandboxActor } from '../entity.js';
import type { Kernel } from '../kernel.js';
import { requireAgent } from './common.js';

function guest(k: Kernel, sandboxId: string, command: string): void {
  requireAgent(k.sandbox(sandboxId), command);
}

export async function guestDetails(k: Kernel, sandboxId: string): Promise<GuestDetails> {
  guest(k, sandboxId, 'guestDetails');
  return k.call(k.agent.getGuestDetails(sandboxId), 'getGuestDetails');
}

export async function listInterfaces(k: Kernel, sandboxId: string): Promise<NetInterface[]> {
  guest(k, sandboxId, 'listInterfaces');
  return k.call(k.agent.listInterfaces(sandboxId), 'listInterfaces');
}

export async function listRoutes(k: Kernel, sandboxId: string): Promise<NetRoute[]> {
  guest(k, sandboxId, 'listRoutes');
  return k.call(k.agent.listRoutes(sandboxId), 'listRoutes');
}

export async function updateInterface(
  k: Kernel,
  sandboxId: string,
  iface: NetInterface,
): Promise<NetInterface> {
  const s = guestNetworkChange(k, sandboxId, 'guest.updateInterface');
  const updated = await k.call(k.agent.updateInterface(sandboxId, iface), 'updateInterface');
  await k.record(s, { type: 'GuestNetworkUpdated', data: { interface: iface } }, { command: 'update' });
  return updated;
}

export async function updateRoutes(
  k: Kernel,
  sandboxId: string,
  routes: readonly NetRoute[],
): Promise<NetRoute[]> {
  const s = guestNetworkChange(k, sandboxId, 'guest.updateRoutes');
  const table = await k.call(k.agent.updateRoutes(sandboxId, routes), 'updateRoutes');
  await k.record(s, { type: 'GuestNetworkUpdated', data: { routes } }, { command: 'update' });
  return table;
}

/** The sandbox, if its guest may have its network changed now (running, agent answering). */
function guestNetworkChange(k: Kernel, sandboxId: string, command: string): SandboxActor {
  const s = k.sandbox(sandboxId);
  requireAgent(s, command);
  if (!can('sandbox', s.snapshot, { type: 'GuestNetworkUpdated', data: {} } as never)) {
    throw new InvalidState('sandbox', sandboxId, s.state, command);
  }
  return s;
}

export async function setGuestTime(k: Kernel, sandboxId: string, time: Date = new Date()): Promise<Date> {
  guest(k, sandboxId, 'setGuestTime');
  await k.call(k.agent.setGuestDateTime(sandboxId, time), 'setGuestDateTime');
  return time;
}

export async function reseedGuestRandom(
  k: Kernel,
  sandboxId: string,
  seed: Uint8Array = randomBytes(64),
): Promise<number> {
  guest(k, sandboxId, 'reseedRandom');
  await k.call(k.agent.reseedRandomDev(sandboxId, seed), 'reseedRandomDev');
  return seed.length;
}

export async function copyFile(
  k: Kernel,
  sandboxId: string,
  path: string,
  data: Uint8Array,
  mode?: number,
): Promise<void> {
  guest(k, sandboxId, 'copyFile');
  await k.call(k.agent.copyFile(sandboxId, path, data, mode), 'copyFile');
}

export async function metrics(k: Kernel, sandboxId: string): Promise<string> {
  guest(k, sandboxId, 'metrics');
  return k.call(k.agent.getMetrics(sandboxId), 'getMetrics');
}
