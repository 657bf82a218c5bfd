// Pruning the image cache: old versions nobody used lately, temp dirs of crashed builds, blobs no image links.
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { builderGone, VERSION_PATTERN } from './cache-layout.js';

/** How many image versions prune keeps (newest by last use), besides any used in the last RECENT_USE_MS. */
const KEEP_VERSIONS = 2;
/** A VM started in the last half hour may still run on an older version: its 9p root must not vanish. */
const RECENT_USE_MS = 30 * 60 * 1000;

/** Removes versions beyond the newest KEEP_VERSIONS (by last use) that nobody used recently, stale temp dirs, orphan blobs. */
export async function pruneCache(cacheDir: string, current: string, logger: Logger): Promise<void> {
  const names = await readdir(cacheDir);
  const now = Date.now();
  const versions: Array<{ name: string; used: number }> = [];
  for (const name of names) {
    const info = await stat(join(cacheDir, name)).catch(() => undefined);
    if (!info?.isDirectory()) continue;
    if (VERSION_PATTERN.test(name)) versions.push({ name, used: info.mtimeMs });
    else if (name.startsWith('.tmp-') && (builderGone(name) || now - info.mtimeMs > 60 * 60 * 1000)) {
      await rm(join(cacheDir, name), { recursive: true, force: true });
    }
  }
  versions.sort((a, b) => b.used - a.used);
  const doomed = versions
    .slice(KEEP_VERSIONS)
    .filter((version) => version.name !== current && now - version.used > RECENT_USE_MS);
  for (const version of doomed) {
    logger.info({ version: version.name }, 'image: pruning old version');
    await rm(join(cacheDir, version.name), { recursive: true, force: true });
  }
  const blobs = join(cacheDir, 'blobs');
  for (const name of await readdir(blobs).catch(() => [] as string[])) {
    if (name.startsWith('.tmp-') && builderGone(name)) {
      await rm(join(blobs, name), { force: true });
      continue;
    }
    const info = await stat(join(blobs, name)).catch(() => undefined);
    // A fresh blob may be about to be linked by a concurrent build in another process: leave young ones alone.
    if (info && info.nlink === 1 && now - info.mtimeMs > RECENT_USE_MS && !name.startsWith('.tmp-')) {
      await rm(join(blobs, name), { force: true });
    }
  }
}
