// A read-only rootfs (CRI's pause container, a pod's readOnlyRootFilesystem) has no room for the mount
// targets its spec's binds need (CRI binds /etc/resolv.conf, /etc/hostname, /etc/hosts into a pause image
// that has none). runc makes them before it remounts the root read-only; sandboxd shares such a rootfs
// read-only with the guest, where crun could not make them, so the shim makes them here on the host, in the
// snapshot containerd mounted for the task, before the container is created.
import { lstat, mkdir, stat, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';

export interface SpecMount {
  readonly destination: string;
  readonly type?: string;
  readonly source?: string;
  readonly options?: readonly string[];
}

export interface MountTarget {
  /** Absolute path in the container. */
  readonly path: string;
  /** A bind of a host file is mounted on a file; everything else on a directory. */
  readonly kind: 'file' | 'dir';
}

const isBind = (m: SpecMount) =>
  m.type === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');

const clean = (p: string) => posix.normalize(p).replace(/(.)\/+$/, '$1');

/** Under another mount of the spec (e.g. /dev/shm under /dev's tmpfs): crun makes it inside that mount. */
function underAnother(path: string, mounts: readonly SpecMount[]): boolean {
  return mounts.some((m) => {
    const d = clean(m.destination);
    return d !== path && (d === '/' || path.startsWith(`${d}/`));
  });
}

/**
 * The targets the spec's mounts need in the rootfs, in spec order: `kindOf` tells a bind source's kind
 * (a host file → 'file'); a destination below another mount, or not absolute, is left to crun.
 */
export function mountTargets(
  mounts: readonly SpecMount[],
  kindOf: (m: SpecMount) => 'file' | 'dir',
): MountTarget[] {
  const out: MountTarget[] = [];
  for (const m of mounts) {
    if (!posix.isAbsolute(m.destination)) continue;
    const path = clean(m.destination);
    if (path === '/' || underAnother(path, mounts)) continue;
    out.push({ path, kind: isBind(m) ? kindOf(m) : 'dir' });
  }
  return out;
}

/**
 * Makes what is missing of `target` inside `rootfs`. Every existing component must be a real directory (the
 * last may be the target itself): an image's symlink is never followed out of its rootfs, and such a target
 * is left for crun to refuse.
 */
async function makeTarget(rootfs: string, target: MountTarget): Promise<void> {
  const parts = target.path.split('/').filter(Boolean);
  let at = rootfs;
  for (const [i, part] of parts.entries()) {
    at = join(at, part);
    const last = i === parts.length - 1;
    const st = await lstat(at).catch(() => undefined);
    if (st) {
      if (st.isSymbolicLink() || (!last && !st.isDirectory())) return;
      continue;
    }
    if (last && target.kind === 'file') await writeFile(at, '', { flag: 'wx', mode: 0o644 });
    else await mkdir(at, { mode: 0o755 });
  }
}

/** Makes the spec's missing mount targets in a read-only task's rootfs (mounted at `rootfs` on the host). */
export async function makeMountTargets(rootfs: string, mounts: readonly SpecMount[]): Promise<void> {
  const kinds = new Map<string, 'file' | 'dir'>();
  for (const m of mounts) {
    if (!isBind(m) || !m.source) continue;
    const st = await stat(m.source).catch(() => undefined);
    kinds.set(m.source, st && !st.isDirectory() ? 'file' : 'dir');
  }
  for (const t of mountTargets(mounts, (m) => kinds.get(m.source ?? '') ?? 'dir'))
    await makeTarget(rootfs, t);
}
