// The content-addressed blob store of host files (<cacheDir>/blobs/<sha256>), hard-linked into each image.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, link, mkdir, rename, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fsyncPath } from '../store/index.js';
import { tmpName } from './cache-layout.js';

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Puts the bytes of `source` into the content-addressed blob store once; returns the blob's path. */
export async function ensureBlob(cacheDir: string, source: string, sha256: string): Promise<string> {
  const blobs = join(cacheDir, 'blobs');
  const blob = join(blobs, sha256);
  if (await stat(blob).catch(() => undefined)) return blob;
  await mkdir(blobs, { recursive: true });
  const tmp = join(blobs, tmpName('blob'));
  await copyFile(source, tmp);
  await fsyncPath(tmp);
  await chmod(tmp, 0o755);
  await rename(tmp, blob);
  return blob;
}

/**
 * Hard-links the blob into the image (images share node's 100 MB); copies the host file instead when linking
 * fails (another filesystem, or a concurrent prune removed the blob in between).
 */
export async function placeBlob(blob: string, source: string, target: string): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  try {
    await link(blob, target);
  } catch {
    await copyFile(source, target);
    await chmod(target, 0o755);
  }
}
