// Names the shim derives: its socket, the sandbox and container a containerd task becomes, their labels.
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';

/** Where containerd's own shims put their sockets (a path socket, never an abstract one: CVE-2020-15257). */
export const SOCKET_DIR = process.env.SANDBOXD_SHIM_SOCKET_DIR ?? '/run/containerd/s';

/** One shim server per containerd: the socket path is a hash of containerd's address. */
export function shimSocketPath(containerdAddress: string): string {
  const h = createHash('sha256').update(`sandboxd-shim\0${containerdAddress}`).digest('hex');
  return join(SOCKET_DIR, h.slice(0, 48));
}

export const LABEL_NAMESPACE = 'io.containerd.namespace';
export const LABEL_TASK = 'io.containerd.task';
export const LABEL_OWNER = 'io.sandboxd.shim';

const ID_OK = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** A sandboxd id for a containerd id: itself when it fits sandboxd's alphabet, else a readable hash. */
export function containerIdFor(taskId: string): string {
  if (ID_OK.test(taskId)) return taskId;
  const h = createHash('sha256').update(taskId).digest('hex').slice(0, 16);
  const head = taskId.replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 40);
  return `${/^[A-Za-z0-9]/.test(head) ? head : 'c'}-${h}`.slice(0, 64);
}

/** A fresh sandbox id for a task that is its own pod (a suffix keeps lives apart when an id is reused). */
export function sandboxIdFor(namespace: string, taskId: string): string {
  const base = `${namespace}.${taskId}`.replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 50);
  return `${/^[A-Za-z0-9]/.test(base) ? base : 's'}-${randomBytes(4).toString('hex')}`;
}

/** A pod's sandbox id from the CRI sandbox id (stable: every container of the pod finds it). */
export function podSandboxIdFor(namespace: string, criSandboxId: string): string {
  return `pod-${createHash('sha256').update(`${namespace}\0${criSandboxId}`).digest('hex').slice(0, 24)}`;
}
