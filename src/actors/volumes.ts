// Host directories and files given to containers: bind-mounted into the sandbox share, unmounted before anything is removed.
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { promisify } from 'node:util';
import { HypervisorError, InvalidArgument } from '../errors/index.js';
import type { StateDirGuard } from './host-paths.js';

const run = promisify(execFile);

/** A host path a container sees at `destination` (docker's -v source:destination[:ro]). */
export interface VolumeMount {
  /** Absolute host path of a directory or file. */
  readonly source: string;
  /** Absolute path inside the container. */
  readonly destination: string;
  readonly readonly?: boolean;
}

/** Where a container's volumes are bound inside the share: beside the bundles, never inside one. */
export function volumesDir(shared: string, containerId: string): string {
  return join(shared, '.volumes', containerId);
}

/** Mount points (decoded) of this mount namespace, from /proc/self/mountinfo. */
async function mountPoints(): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) =>
      (line.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) =>
        String.fromCharCode(Number.parseInt(o, 8)),
      ),
    );
}

/** Mount points at or below `dir`, deepest first (the order they must be unmounted in). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const inside = (await mountPoints()).filter((m) => m === dir || m.startsWith(dir + sep));
  return [...new Set(inside)].sort((a, b) => b.length - a.length);
}

/** Runs mount(8); a failure is a HypervisorError naming `step` with mount's own words. */
export async function mountCommand(step: string, args: string[]): Promise<void> {
  try {
    await run('mount', args);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new HypervisorError(step, (e.stderr ?? e.message).trim() || e.message, { args: args.join(' ') });
  }
}

/**
 * Binds each volume's source at `<volumesDir>/<index>` (read-only when asked). Idempotent: a retried create
 * finds its binds in place. Each source is checked against the state dir and bound through an open handle
 * (so a name swapped for a symlink after the check cannot win), and the bind is undone when what got mounted
 * is not what was checked. Throws InvalidArgument naming `fieldOf(i)` for a source that is gone or overlaps.
 */
export async function bindVolumes(
  shared: string,
  containerId: string,
  mounts: readonly VolumeMount[],
  guard: StateDirGuard,
  fieldOf: (index: number) => string,
): Promise<void> {
  const dir = volumesDir(shared, containerId);
  await mkdir(dir, { recursive: true });
  const mounted = new Set(await mountsUnder(dir));
  for (const [i, volume] of mounts.entries()) {
    const target = join(dir, String(i));
    if (mounted.has(target)) continue;
    await bindChecked(guard, volume.source, fieldOf(i), target, 'bind volume');
    if (volume.readonly) await mountCommand('bind volume read-only', ['-o', 'remount,bind,ro', target]);
  }
}

/**
 * Binds `source` at `target` (made to match: a directory or a file) through a checked handle; refuses, and
 * unmounts again, when the mounted inode differs from the one checked.
 */
export async function bindChecked(
  guard: StateDirGuard,
  source: string,
  field: string,
  target: string,
  step: string,
): Promise<void> {
  const checked = await guard.openChecked(source, field);
  try {
    // A bind needs a mount point of the same kind: a directory for a directory, a file for a file.
    if (checked.isDirectory) await mkdir(target, { recursive: true });
    else await writeFile(target, '', { flag: 'a' });
    // -c: no canonicalising, or mount(8) would resolve the handle back into a name and look it up again.
    await mountCommand(step, ['-c', '--bind', checked.path, target]);
    const bound = await stat(target);
    if (bound.dev !== checked.dev || bound.ino !== checked.ino) {
      await run('umount', [target]).catch(() => run('umount', ['-l', target]));
      throw new InvalidArgument(field, `${source} changed while it was being bound`);
    }
  } finally {
    await checked.close();
  }
}

/**
 * Unmounts everything at or below `dir` (deepest first; lazily when busy) and checks that nothing is left,
 * so that removing `dir` afterwards can never reach into a host directory. Throws when a mount stays.
 */
export async function unmountAllUnder(dir: string): Promise<void> {
  for (const point of await mountsUnder(dir)) {
    try {
      await run('umount', [point]);
    } catch {
      // Busy (a 9p read in flight): detach now, the kernel finishes when it is idle.
      await run('umount', ['-l', point]).catch(() => undefined);
    }
  }
  const left = await mountsUnder(dir);
  if (left.length > 0) {
    throw new HypervisorError('unmount volumes', `still mounted: ${left.join(', ')}; not removing ${dir}`, {
      dir,
    });
  }
}

/** Unmounts a container's volumes and removes their (now empty) mount points. */
export async function releaseVolumes(shared: string, containerId: string): Promise<void> {
  const dir = volumesDir(shared, containerId);
  await unmountAllUnder(dir);
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return;
  }
  // Mount points only: empty dirs and files; never a recursive remove here.
  for (const name of entries) {
    const path = join(dir, name);
    await rmdir(path).catch(() => unlink(path).catch(() => undefined));
  }
  await rmdir(dir).catch(() => undefined);
}
