// The Agent port's RPCs on containers: lifecycle under crun, resources, listing, stats, processes.

import { AgentError } from '../errors/index.js';
import type { AgentConnections } from './connection.js';
import {
  fromWireContainer,
  fromWireProcessInfo,
  fromWireStats,
  toWireProcess,
  toWireResources,
} from './convert.js';
import type {
  ContainerInfo,
  ContainerResources,
  ContainerStats,
  CreateContainerRequest,
  ProcessInfo,
} from './types.js';

export async function createContainer(
  connections: AgentConnections,
  sandboxId: string,
  request: CreateContainerRequest,
): Promise<{ pid: number }> {
  const answer = await connections.unary(
    sandboxId,
    'CreateContainer',
    {
      containerId: request.containerId,
      bundle: request.bundle,
      process: request.process ? toWireProcess(request.process) : undefined,
      resources: request.resources ? toWireResources(request.resources) : undefined,
    },
    Math.max(connections.callDeadlineMs, 90_000),
  );
  return { pid: answer.pid };
}

export async function startContainer(
  connections: AgentConnections,
  sandboxId: string,
  containerId: string,
): Promise<void> {
  await connections.unary(
    sandboxId,
    'StartContainer',
    { containerId },
    Math.max(connections.callDeadlineMs, 90_000),
  );
}

/** The call's deadline leaves room for the guest's own `timeoutMs` (its default, 10 s, when none is given). */
export async function removeContainer(
  connections: AgentConnections,
  sandboxId: string,
  containerId: string,
  timeoutMs?: number,
): Promise<void> {
  await connections.unary(
    sandboxId,
    'RemoveContainer',
    { containerId, timeoutMs: timeoutMs ?? 0 },
    connections.callDeadlineMs + (timeoutMs ?? 10_000),
  );
}

export async function pauseContainer(
  connections: AgentConnections,
  sandboxId: string,
  containerId: string,
): Promise<void> {
  await connections.unary(sandboxId, 'PauseContainer', { containerId });
}

export async function resumeContainer(
  connections: AgentConnections,
  sandboxId: string,
  containerId: string,
): Promise<void> {
  await connections.unary(sandboxId, 'ResumeContainer', { containerId });
}

export async function listContainers(
  connections: AgentConnections,
  sandboxId: string,
): Promise<ContainerInfo[]> {
  const answer = await connections.unary(sandboxId, 'ListContainers', {});
  return answer.containers.map(fromWireContainer);
}

export async function updateContainer(
  connections: AgentConnections,
  sandboxId: string,
  containerId: string,
  resources: ContainerResources,
): Promise<void> {
  await connections.unary(sandboxId, 'UpdateContainer', {
    containerId,
    resources: toWireResources(resources),
  });
}

export async function statsContainer(
  connections: AgentConnections,
  sandboxId: string,
  containerId: string,
): Promise<ContainerStats> {
  const { stats } = await connections.unary(sandboxId, 'StatsContainer', { containerId });
  if (!stats) throw new AgentError('agent StatsContainer', 'empty answer', { sandboxId, containerId });
  return fromWireStats(stats);
}

export async function listProcesses(
  connections: AgentConnections,
  sandboxId: string,
  containerId: string,
  format: 'json' | 'table',
  args?: readonly string[],
): Promise<{ processes: ProcessInfo[]; table?: string }> {
  const answer = await connections.unary(sandboxId, 'ListProcesses', {
    containerId,
    format,
    args: args ?? [],
  });
  return {
    processes: answer.processes.map(fromWireProcessInfo),
    ...(format === 'table' ? { table: answer.table } : {}),
  };
}
