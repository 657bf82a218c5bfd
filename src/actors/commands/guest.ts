// Calls on a running sandbox's guest: details, network, time, randomness, files, metrics.
import { randomBytes } from 'node:crypto';
import type { GuestDetails, NetInterface, NetRoute } from '../../agent/index.js';
import type { Kernel } from '../kernel.js';
import { changeAndWait } from './common.js';
import { decide } from './decide.js';

function guest(k: Kernel, sandboxId: string, command: string): void {
  decide('guest', { sandbox: k.sandbox(sandboxId) }, command);
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
  await changeGuestNetwork(k, sandboxId, 'guest.updateInterface', { interface: iface });
  // What the guest made of it (the addresses and MAC it has now), as its agent lists it.
  const now = await k.call(k.agent.listInterfaces(sandboxId), 'listInterfaces');
  return now.find((i) => i.name === iface.name) ?? iface;
}

export async function updateRoutes(
  k: Kernel,
  sandboxId: string,
  routes: readonly NetRoute[],
): Promise<NetRoute[]> {
  await changeGuestNetwork(k, sandboxId, 'guest.updateRoutes', { routes });
  return k.call(k.agent.listRoutes(sandboxId), 'listRoutes');
}

/**
 * The intent first, then the guest (the updateGuestNetwork effect), then the outcome: a crash in between
 * leaves an intent recovery applies again. The whole of it holds the sandbox's turn.
 */
async function changeGuestNetwork(
  k: Kernel,
  sandboxId: string,
  command: string,
  change: object,
): Promise<void> {
  const by = k.open(command);
  const s = k.sandboxEntry(sandboxId);
  await changeAndWait(
    k,
    s,
    command,
    () => {
      decide('guest', { sandbox: s }, command);
      return { type: 'GuestNetworkUpdateRequested', data: change, correlationId: by };
    },
    () => s.context.networkUpdating !== undefined,
  );
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
