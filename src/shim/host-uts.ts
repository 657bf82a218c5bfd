// A CRI pod on the node's network (hostNetwork) shares the node's UTS namespace too: containerd writes a spec
// with the pod's hostname and no UTS namespace, which crun refuses in the guest ("hostname requires the UTS
// namespace"): the pause container exited 1 as it started and CRI ended the pod. In a VM the pod's node is
// the VM: its guest hostname becomes the pod's (the sandbox's `hostname`), and the spec's hostname is taken
// out of the bundle, so the pod's containers share the guest's UTS namespace as they would share the node's.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

interface UtsSpec {
  hostname?: string;
  linux?: { namespaces?: { type?: string }[] };
}

// sandbox.create's hostname: one DNS label.
const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** The hostname a spec asks for without a UTS namespace of its own (undefined when it has one, or none). */
export function hostnameWithoutUts(spec: UtsSpec): string | undefined {
  if (!spec.hostname) return undefined;
  if (spec.linux?.namespaces?.some((n) => n.type === 'uts')) return undefined;
  return spec.hostname;
}

/** The guest hostname for such a pod: the hostname, or its first label for a dotted name; else none. */
export function guestHostnameOf(hostname: string): string | undefined {
  const first = hostname.split('.')[0] ?? '';
  return LABEL.test(hostname) ? hostname : LABEL.test(first) ? first : undefined;
}

/** Rewrites `<bundle>/config.json` without its hostname (written whole, then renamed over the old one). */
export async function dropSpecHostname(bundle: string): Promise<void> {
  const path = join(bundle, 'config.json');
  const spec = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  delete spec.hostname;
  const tmp = `${path}.sandboxd-${process.pid}`;
  await writeFile(tmp, JSON.stringify(spec), { mode: 0o600 });
  await rename(tmp, path);
}
