// The guest root as a read-only erofs block image: the VM opens it with virtio-blk readonly=on, so unlike a
// mounted 9p export it carries no device state that blocks QMP migrate (the template path, issue 18).
import { createHash } from 'node:crypto';
import { fsyncPath } from '../store/index.js';
import { runChecked } from './exec.js';

/** File name of the root image inside an image version dir. */
export const ROOT_IMAGE_FILE = 'root.erofs';
/** Filesystem type the guest init mounts (guest-init.sh: `mount -t erofs`). */
export const ROOT_IMAGE_FSTYPE = 'erofs';

/** A UUID derived from the image version: the same inputs give the same bytes (no random filesystem id). */
function uuidOf(version: string): string {
  const hex = createHash('sha256').update(`sandboxd-root ${version}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/**
 * Packs `rootDir` into an uncompressed erofs image at `target` and fsyncs it. Uncompressed on purpose: under
 * TCG every decompressed page costs emulated CPU at boot, and the host page cache shares the file's pages among
 * all VMs anyway. Timestamps are fixed (-T0) and files owned by root, so the image depends only on the content.
 */
export async function makeRootImage(rootDir: string, target: string, version: string): Promise<void> {
  await runChecked('image: mkfs.erofs (is erofs-utils installed?)', 'mkfs.erofs', [
    '--quiet',
    '--all-root',
    '-T0',
    `-U${uuidOf(version)}`,
    target,
    rootDir,
  ]);
  await fsyncPath(target);
}
