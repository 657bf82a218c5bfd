// Where the image cache keeps things: one dir per version, the names of its files, temp names of builds.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { GuestImagePaths } from '../hypervisor/index.js';
import { ROOT_IMAGE_FILE } from './rootfs.js';

/** The kernel QEMU boots: a PVH ELF unpacked from Debian's bzImage when it can be (pvh.ts), else the bzImage. */
export const KERNEL_FILE = 'kernel';
/** The name of a version dir: 16 hex digits (versionOf). */
export const VERSION_PATTERN = /^[0-9a-f]{16}$/;

/** SANDBOXD_IMAGE_DIR, else /var/cache/sandboxd/images. */
export function defaultImageCacheDir(): string {
  return process.env.SANDBOXD_IMAGE_DIR ?? '/var/cache/sandboxd/images';
}

/** Paths of an image version inside the cache. */
export function imagePaths(cacheDir: string, version: string): GuestImagePaths {
  const dir = join(cacheDir, version);
  return {
    kernel: join(dir, KERNEL_FILE),
    initrd: join(dir, 'initrd.gz'),
    rootDir: join(dir, 'root'),
    rootImage: join(dir, ROOT_IMAGE_FILE),
    version,
  };
}

/** A temp name that carries this process's pid, so that a later build can tell a crashed one (builderGone). */
export function tmpName(prefix: string): string {
  return `.tmp-${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** True when the temp dir's builder process (its pid is in the name) no longer exists: a crashed build. */
export function builderGone(name: string): boolean {
  const pid = Number(/^\.tmp-[^-]+-(\d+)-[0-9a-f]+$/.exec(name)?.[1] ?? Number.NaN);
  if (!Number.isInteger(pid) || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
