// `state` and `list`: the runtime spec's state of a container ({ociVersion, id, status, pid, bundle, …}) as
// runc prints it, from the daemon's view and our record.
import { readFileSync } from 'node:fs';
import type { Located } from './locate.js';

export const SPEC_VERSION = '1.2.0';

export type Status = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

export interface RuncState {
  ociVersion: string;
  id: string;
  pid: number;
  status: Status;
  bundle: string;
  rootfs: string;
  created: string;
  owner: string;
  annotations?: Record<string, string>;
}

/** The spec's status for a sandboxd container state (transitional states read as the state they leave). */
export function statusOf(state: string | undefined): Status {
  switch (state) {
    case 'creating':
      return 'creating';
    case 'created':
    case 'starting':
      return 'created';
    case 'running':
    case 'pausing':
    case 'stopping':
      return 'running';
    case 'paused':
    case 'resuming':
      return 'paused';
    default:
      return 'stopped';
  }
}

/**
 * Whether `pid` is still the keeper create started: a live process (not a zombie waiting for its reaper) whose
 * command line is the keeper's, so a pid the kernel gave to someone else later does not count.
 */
export function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/\) [ZX] /.test(stat)) return false;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('sandboxd-runc-keeper');
  } catch {
    return false;
  }
}

export function runcState(id: string, found: Located): RuncState {
  const { record, view } = found;
  const status = statusOf(view?.state);
  // The host pid that stands for the process is its keeper's; a stopped container has none (runc says 0).
  const pid = status !== 'stopped' && alive(record?.keeperPid) ? (record?.keeperPid ?? 0) : 0;
  const bundle = record?.bundle ?? view?.bundle ?? '';
  const annotations = view?.annotations ?? {};
  return {
    ociVersion: record?.ociVersion ?? SPEC_VERSION,
    id,
    pid,
    status,
    bundle,
    rootfs: record?.rootfs ?? `${bundle}/rootfs`,
    created: record?.created ?? view?.createdAt ?? new Date(0).toISOString(),
    owner: '',
    ...(Object.keys(annotations).length > 0 ? { annotations: { ...annotations } } : {}),
  };
}
