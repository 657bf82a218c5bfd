// The Agent port's RPCs on the guest's network: its interfaces and its routes.
import type { AgentConnections } from './connection.js';
import { fromWireInterface, fromWireRoute, toWireInterface, toWireRoute } from './convert.js';
import type { NetInterface, NetRoute } from './types.js';

export async function listInterfaces(
  connections: AgentConnections,
  sandboxId: string,
): Promise<NetInterface[]> {
  const answer = await connections.unary(sandboxId, 'ListInterfaces', {});
  return answer.interfaces.map(fromWireInterface);
}

export async function updateInterface(
  connections: AgentConnections,
  sandboxId: string,
  iface: NetInterface,
): Promise<NetInterface> {
  const answer = await connections.unary(sandboxId, 'UpdateInterface', { interface: toWireInterface(iface) });
  return fromWireInterface(answer.interface);
}

export async function listRoutes(connections: AgentConnections, sandboxId: string): Promise<NetRoute[]> {
  return (await connections.unary(sandboxId, 'ListRoutes', {})).routes.map(fromWireRoute);
}

export async function updateRoutes(
  connections: AgentConnections,
  sandboxId: string,
  routes: readonly NetRoute[],
): Promise<NetRoute[]> {
  const answer = await connections.unary(sandboxId, 'UpdateRoutes', { routes: routes.map(toWireRoute) });
  return answer.routes.map(fromWireRoute);
}
