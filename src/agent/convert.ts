// Conversions between the Agent port's types and the agent.proto wire messages (defaults as proto3 spells them).
import type { ContainerResources, ExitStatus, NetInterface, NetRoute, ProcessSpec } from './types.js';
import { OCI_PROCESS_EXTRAS } from './types.js';
import type {
  Outgoing,
  WireExitStatus,
  WireNetInterface,
  WireNetRoute,
  WireProcessSpec,
  WireResources,
} from './wire.js';

export function toExit(status: WireExitStatus | null): ExitStatus {
  if (!status) return { exitCode: 255 };
  return {
    exitCode: status.exitCode,
    ...(status.signal !== '' ? { signal: status.signal } : {}),
    ...(status.oomKilled ? { oomKilled: true } : {}),
  };
}

export function toWireProcess(spec: ProcessSpec): Outgoing<WireProcessSpec> {
  return {
    args: spec.args,
    env: spec.env ?? [],
    cwd: spec.cwd ?? '',
    terminal: spec.terminal ?? false,
    user: typeof spec.user === 'string' ? spec.user : '',
    consoleHeight: spec.consoleSize?.height ?? 0,
    consoleWidth: spec.consoleSize?.width ?? 0,
    ociJson: ociJsonOf(spec),
  };
}

/** The OCI-only fields of `spec` as the guest merges them ('' when there are none). */
function ociJsonOf(spec: ProcessSpec): string {
  const extras: Record<string, unknown> = {};
  for (const key of OCI_PROCESS_EXTRAS) if (spec[key] !== undefined) extras[key] = spec[key];
  if (typeof spec.user === 'object') extras.user = spec.user;
  return Object.keys(extras).length > 0 ? JSON.stringify(extras) : '';
}

export function toWireResources(resources: ContainerResources): Outgoing<WireResources> {
  return {
    memoryLimitBytes: resources.memoryLimitBytes ?? 0,
    cpuQuota: resources.cpuQuota ?? 0,
    cpuPeriod: resources.cpuPeriod ?? 0,
    pidsLimit: resources.pidsLimit ?? 0,
    cpuShares: resources.cpuShares ?? 0,
  };
}

export function fromWireInterface(iface: WireNetInterface | null): NetInterface {
  if (!iface) return { name: '', addresses: [] };
  return {
    name: iface.name,
    ...(iface.mac !== '' ? { mac: iface.mac } : {}),
    ...(iface.mtu > 0 ? { mtu: iface.mtu } : {}),
    addresses: iface.addresses,
    up: iface.up,
  };
}

export function fromWireRoute(route: WireNetRoute): NetRoute {
  return {
    dest: route.dest,
    ...(route.gateway !== '' ? { gateway: route.gateway } : {}),
    ...(route.device !== '' ? { device: route.device } : {}),
    ...(route.source !== '' ? { source: route.source } : {}),
  };
}
