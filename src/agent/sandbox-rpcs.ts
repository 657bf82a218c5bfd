// The Agent port's RPCs on the guest as a whole: set up and tear down, hotplug, clock, files, entropy, facts.
import type { AgentConnections } from './connection.js';
import type { CreateSandboxRequest, GuestDetails } from './types.js';

/** `outputBufferBytes`: what the guest keeps per unread output stream (0: the guest's default). */
export async function createSandbox(
  connections: AgentConnections,
  sandboxId: string,
  request: CreateSandboxRequest,
  outputBufferBytes: number,
): Promise<void> {
  await connections.unary(sandboxId, 'CreateSandbox', {
    hostname: request.hostname ?? '',
    dns: request.dns ?? [],
    sandboxPidns: request.sandboxPidNs ?? false,
    storages: (request.storages ?? []).map((s) => ({ ...s, options: [...s.options] })),
    outputBufferBytes,
  });
}

/**
 * Kills every container; the agent then exits 0 and the guest powers off. Disconnects afterwards: the agent can only
 * exit once its blocked read on the port returns, which happens when the host side goes away.
 */
export async function destroySandbox(connections: AgentConnections, sandboxId: string): Promise<void> {
  await connections.unary(sandboxId, 'DestroySandbox', {}, Math.max(connections.callDeadlineMs, 60_000));
  await connections.close(sandboxId);
}

export async function onlineCpuMem(
  connections: AgentConnections,
  sandboxId: string,
  options: { cpus?: number; memory?: boolean },
): Promise<void> {
  await connections.unary(sandboxId, 'OnlineCPUMem', {
    cpus: options.cpus ?? 0,
    memory: options.memory ?? false,
  });
}

export async function memHotplugByProbe(
  connections: AgentConnections,
  sandboxId: string,
  addresses: readonly number[],
): Promise<void> {
  await connections.unary(sandboxId, 'MemHotplugByProbe', { addresses });
}

export async function getGuestDetails(
  connections: AgentConnections,
  sandboxId: string,
): Promise<GuestDetails> {
  return connections.unary(sandboxId, 'GetGuestDetails', {});
}

export async function setGuestDateTime(
  connections: AgentConnections,
  sandboxId: string,
  date: Date,
): Promise<void> {
  const ms = date.getTime();
  await connections.unary(sandboxId, 'SetGuestDateTime', {
    sec: Math.floor(ms / 1000),
    usec: (ms % 1000) * 1000,
  });
}

export async function copyFile(
  connections: AgentConnections,
  sandboxId: string,
  path: string,
  data: Uint8Array,
  mode?: number,
): Promise<void> {
  await connections.unary(sandboxId, 'CopyFile', { path, data: Buffer.from(data), mode: mode ?? 0 });
}

export async function reseedRandomDev(
  connections: AgentConnections,
  sandboxId: string,
  seed: Uint8Array,
): Promise<void> {
  await connections.unary(sandboxId, 'ReseedRandomDev', { data: Buffer.from(seed) });
}

export async function getMetrics(connections: AgentConnections, sandboxId: string): Promise<string> {
  return (await connections.unary(sandboxId, 'GetMetrics', {})).metrics;
}
