// Finding a container by its id alone: ids are global for runc's clients, sandboxes are sandboxd's business.
import { createHash } from 'node:crypto';
import type { ApiClient } from '../api/index.js';
import { isNotFound } from './errors.js';
import { type ContainerRecord, readRecord } from './records.js';

/** The daemon's view of a container (the members sandboxd-runc reads). */
export interface ContainerView {
  readonly sandboxId: string;
  readonly id: string;
  readonly state: string;
  readonly bundle: string;
  readonly pid?: number;
  readonly exit?: { exitCode: number; signal?: string; oomKilled?: boolean };
  readonly execs: readonly string[];
  readonly createdAt: string;
  readonly annotations: Readonly<Record<string, string>>;
  readonly terminal: boolean;
}

interface SandboxView {
  readonly id: string;
  readonly state: string;
  readonly containers: readonly string[];
}

export const CRI_TYPE = 'io.kubernetes.cri.container-type';
export const CRI_SANDBOX = 'io.kubernetes.cri.sandbox-id';

/**
 * The sandbox that holds container (or pod) `id` when sandboxd-runc makes it: short and derived from the id,
 * so the daemon's per-sandbox socket paths stay within the 108 bytes of a unix socket path.
 */
export function sandboxIdFor(id: string): string {
  if (id.length <= 20) return `oci-${id}`;
  return `oci-${id.slice(0, 8)}-${createHash('sha256').update(id).digest('hex').slice(0, 11)}`;
}

/** Where a new container goes: its own sandbox, or its pod's when the CRI annotations group it. */
export function placement(id: string, annotations: Readonly<Record<string, string>>) {
  const pod = annotations[CRI_SANDBOX];
  const type = annotations[CRI_TYPE];
  if (pod && type === 'container') return { sandboxId: sandboxIdFor(pod), joins: true };
  return { sandboxId: sandboxIdFor(pod ?? id), joins: false };
}

export interface Located {
  readonly record?: ContainerRecord;
  /** Undefined: recorded here, but the daemon no longer knows it (it stopped existing). */
  readonly view?: ContainerView;
  readonly sandboxId: string;
}

/** The container `id`: from our record, the derived sandbox, or any sandbox of the daemon. */
export async function locate(client: ApiClient, root: string, id: string): Promise<Located | undefined> {
  const record = await readRecord(root, id);
  const sandboxId = record?.sandboxId ?? sandboxIdFor(id);
  try {
    const view = await client.call<ContainerView>('container.state', { sandboxId, id });
    return { record, view, sandboxId };
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  if (record) return { record, sandboxId };
  // Made by another client (or another --root): any sandbox holding a container of that id.
  const sandboxes = await client.call<SandboxView[]>('sandbox.list', {});
  for (const s of sandboxes) {
    if (!s.containers.includes(id)) continue;
    const view = await client.call<ContainerView>('container.state', { sandboxId: s.id, id });
    return { view, sandboxId: s.id };
  }
  return undefined;
}
