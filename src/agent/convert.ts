// Conversions between the Agent port's types and the agent.proto wire messages (defaults as proto3 spells them).
import type {
  ContainerInfo,
  ContainerResources,
  ContainerStats,
  ExitStatus,
  NetInterface,
  NetRoute,
  ProcessInfo,
  ProcessSpec,
} from './types.js';
import { OCI_PROCESS_EXTRAS } from './types.js';
import type {
  Outgoing,
  WireContainerInfo,
  WireContainerStats,
  WireExitStatus,
  WireNetInterface,
  WireNetRoute,
  WireProcessInfo,
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

export function fromWireContainer(container: WireContainerInfo): ContainerInfo {
  return {
    containerId: container.containerId,
    status: container.status as ContainerInfo['status'],
    ...(container.pid > 0 ? { pid: container.pid } : {}),
    ...(container.exit ? { exit: toExit(container.exit) } : {}),
    processes: container.processes.map((process) => ({
      execId: process.execId,
      running: process.running,
      ...(process.exit ? { exit: toExit(process.exit) } : {}),
    })),
  };
}

export function fromWireStats(stats: WireContainerStats): ContainerStats {
  return {
    cpuUsageUsec: stats.cpuUsageUsec,
    memoryUsageBytes: stats.memoryUsageBytes,
    ...(stats.memoryLimitBytes > 0 ? { memoryLimitBytes: stats.memoryLimitBytes } : {}),
    pids: stats.pids,
    ioReadBytes: stats.ioReadBytes,
    ioWriteBytes: stats.ioWriteBytes,
  };
}

export function fromWireProcessInfo(p: WireProcessInfo): ProcessInfo {
  return {
    pid: p.pid,
    command: p.command,
    ...(p.user ? { user: p.user } : {}),
  };
}

export function toWireInterface(iface: NetInterface): Outgoing<WireNetInterface> {
  return {
    name: iface.name,
    mac: iface.mac ?? '',
    mtu: iface.mtu ?? 0,
    addresses: iface.addresses,
    up: iface.up ?? true,
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

export function toWireRoute(route: NetRoute): Outgoing<WireNetRoute> {
  return {
    dest: route.dest,
    gateway: route.gateway ?? '',
    device: route.device ?? '',
    source: route.source ?? '',
  };
}
