// A container's bundle put into the sandbox share without copying: its rootfs bind-mounted, its translated
// config.json written beside it, its host binds bound below the share; all of it undone before anything is removed.
import { mkdir, rm, rmdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { bindSourcePlaceholder, type GuestTranslation, type OciMount } from '../bundle/index.js';
import { writeFileDurably } from '../store/index.js';
import type { StateDirGuard } from './host-paths.js';
import {
  bindChecked,
  bindVolumes,
  mountCommand,
  mountsUnder,
  releaseVolumes,
  unmountAllUnder,
  type VolumeMount,
  volumesDir,
} from './volumes.js';

/** `<shared>/<containerId>`: what the guest reads as the container's bundle (config.json + rootfs). */
export function sharedBundleDir(shared: string, containerId: string): string {
  return join(shared, containerId);
}

/**
 * Shares a translated bundle with the guest: binds the rootfs at `<bundle dir>/rootfs` (read-only on the host too
 * when root.readonly), binds the spec's host binds and then the client's volumes below the share, and writes the
 * guest's config.json with each bind's source named relative to the bundle dir. Idempotent (a retried create
 * finds its binds in place). Throws InvalidArgument naming the field for a source that is gone.
 */
export async function shareBundle(
  shared: string,
  containerId: string,
  translation: GuestTranslation,
  volumes: readonly VolumeMount[],
  guard: StateDirGuard,
): Promise<void> {
  const dir = sharedBundleDir(shared, containerId);
  await mkdir(dir, { recursive: true });
  const rootfs = join(dir, 'rootfs');
  if (!(await mountsUnder(rootfs)).includes(rootfs)) {
    // Not recursive: what the bundle wants mounted inside its rootfs, it says in its mounts.
    await bindChecked(guard, translation.rootfs, 'bundle', rootfs, 'bind rootfs');
    if (translation.readonlyRootfs)
      await mountCommand('bind rootfs read-only', ['-o', 'remount,bind,ro', rootfs]);
  }
  // The bundle's own binds first, then the client's volumes: their indexes below the share follow that order.
  const binds = [...translation.binds, ...volumes];
  const own = translation.binds.length;
  const fieldOf = (i: number) => (i < own ? 'bundle' : `mounts.${i - own}.source`);
  if (binds.length > 0) await bindVolumes(shared, containerId, binds, guard, fieldOf);
  const from = relative(dir, volumesDir(shared, containerId));
  const sourceOf = new Map(
    translation.binds.map((_, i) => [bindSourcePlaceholder(i), join(from, String(i))]),
  );
  const mounts: OciMount[] = [
    ...(translation.guestSpec.mounts ?? []).map((m) => {
      const source = m.source === undefined ? undefined : sourceOf.get(m.source);
      return source === undefined ? m : { ...m, source };
    }),
    ...volumes.map((volume, i) => ({
      destination: volume.destination,
      type: 'bind',
      source: join(from, String(translation.binds.length + i)),
      options: ['rbind', volume.readonly ? 'ro' : 'rw'],
    })),
  ];
  await writeFileDurably(join(dir, 'config.json'), JSON.stringify({ ...translation.guestSpec, mounts }));
}

/**
 * Undoes shareBundle: unmounts the rootfs and every bind (checking that nothing stays mounted), then removes
 * the bundle dir. Never removes while anything below it is mounted, so a host rootfs can never be reached.
 */
export async function unshareBundle(shared: string, containerId: string): Promise<void> {
  const dir = sharedBundleDir(shared, containerId);
  await releaseVolumes(shared, containerId);
  await unmountAllUnder(dir);
  await rmdir(join(dir, 'rootfs')).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}
