// Files sandboxd writes outside LevelDB and relies on: synced before they count, replaced by rename so a
// crash leaves the old file or the new one, never a torn one (DESIGN.md: temp file, fsync, rename, fsync dir).
import { randomBytes } from 'node:crypto';
import { chmod, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Flushes a file's (or a directory's entries') data to disk. */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes `data` to `path` in place and syncs it, with `mode` whatever the umask (for files in a temp tree). */
export async function writeFileSynced(path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  const handle = await open(path, 'w', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await chmod(path, mode);
}

/** Replaces `path` with `data` atomically and durably: temp file beside it, fsync, rename, fsync of the dir. */
export async function writeFileDurably(path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFileSynced(tmp, data, mode);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncPath(dir);
}
