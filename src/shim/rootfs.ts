// The rootfs mounts containerd hands to Create (overlay from its snapshotter, or a bind), mounted at
// <bundle>/rootfs as runc's shim does, and unmounted on delete or on a failed create.
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface MountSpec {
  readonly type: string;
  readonly source: string;
  readonly target?: string;
  readonly options: readonly string[];
}

export async function mountRootfs(bundle: string, mounts: readonly MountSpec[]): Promise<boolean> {
  if (mounts.length === 0) return false;
  const target = join(bundle, 'rootfs');
  await mkdir(target, { recursive: true });
  for (const m of mounts) {
    const args = ['-t', m.type || 'none'];
    if (m.options.length > 0) args.push('-o', m.options.join(','));
    args.push(m.source, target);
    try {
      await run('mount', args);
    } catch (err) {
      throw new Error(
        `mount ${m.type} at ${target}: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`,
      );
    }
  }
  return true;
}

/** Unmounts everything at <bundle>/rootfs (lazily if busy); a rootfs that is not mounted is fine. */
export async function unmountRootfs(bundle: string): Promise<void> {
  const target = join(bundle, 'rootfs');
  for (let i = 0; i < 8; i++) {
    try {
      await run('mountpoint', ['-q', target]);
    } catch {
      return; // not a mount point (any more)
    }
    await run('umount', [target]).catch(() => run('umount', ['-l', target]));
  }
}
