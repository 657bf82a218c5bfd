// Host paths given to containers (volumes, a bundle's binds, its rootfs) must stay clear of the daemon's state dir,
// whatever alias names them: symlinks, `..`, or a bind mount of the state dir, of an ancestor or of a part of it.
import { lstat, open, readdir, readFile, readlink, realpath, stat } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import type { GuestTranslation } from '../bundle/index.js';
import { InvalidArgument } from '../errors/index.js';

/** O_PATH (Linux): a handle on the inode itself, which neither reads it nor follows a later swap of its name. */
const O_PATH = 0o10000000;
const O_NOFOLLOW = 0o400000;

/** Where a path really lives: its inode, and its path inside the filesystem it is on (what every alias shares). */
interface Location {
  readonly dev: number;
  readonly ino: number;
  /** `major:minor` of the filesystem, from mountinfo. */
  readonly fs: string;
  /** The path below that filesystem's own root (mountinfo's root field joined with the rest). */
  readonly fsPath: string;
  /** (dev, ino) of the path and each of its ancestors up to `/`. */
  readonly chain: readonly { dev: number; ino: number }[];
}

interface MountEntry {
  readonly fs: string;
  readonly root: string;
  readonly point: string;
}

const decodeOctal = (field: string) =>
  field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));

async function mountTable(): Promise<MountEntry[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const f = line.split(' ');
      return { fs: f[2] ?? '', root: decodeOctal(f[3] ?? '/'), point: decodeOctal(f[4] ?? '/') };
    });
}

const within = (inner: string, outer: string) =>
  outer === '/' || inner === outer || inner.startsWith(outer.endsWith(sep) ? outer : outer + sep);

/** The location of a real (symlink-free) path. */
async function locate(real: string, mounts: readonly MountEntry[]): Promise<Location> {
  const chain: { dev: number; ino: number }[] = [];
  for (let p = real; ; p = dirname(p)) {
    const s = await stat(p);
    chain.push({ dev: s.dev, ino: s.ino });
    if (p === dirname(p)) break;
  }
  // The mount the path is on: the longest mount point above it, the last listed where several stack there.
  let mount: MountEntry | undefined;
  for (const m of mounts)
    if (within(real, m.point) && (!mount || m.point.length >= mount.point.length)) mount = m;
  const rest = mount ? real.slice(mount.point === '/' ? 0 : mount.point.length) : real;
  const root = mount?.root ?? '/';
  const fsPath = root === '/' ? rest || '/' : `${root}${rest === '/' ? '' : rest}`;
  const self = chain[0]!;
  return { dev: self.dev, ino: self.ino, fs: mount?.fs ?? '', fsPath, chain };
}

/** Whether `a` and `b` overlap: one is the other, or holds it, by inode or by place in the same filesystem. */
function overlaps(a: Location, b: Location): boolean {
  const same = (x: { dev: number; ino: number }, y: { dev: number; ino: number }) =>
    x.dev === y.dev && x.ino === y.ino;
  if (a.chain.some((x) => same(x, b)) || b.chain.some((x) => same(x, a))) return true;
  return a.fs !== '' && a.fs === b.fs && (within(a.fsPath, b.fsPath) || within(b.fsPath, a.fsPath));
}

/** Whether a file below `dir` (its own filesystem only: mount points in `skip` are not entered) has (dev, ino). */
async function holdsInode(
  dir: string,
  dev: number,
  ino: number,
  skip: ReadonlySet<string>,
): Promise<boolean> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (skip.has(path)) continue;
    if (entry.isDirectory()) {
      if (await holdsInode(path, dev, ino, skip)) return true;
      continue;
    }
    const s = await lstat(path).catch(() => undefined);
    if (s && s.dev === dev && s.ino === ino) return true;
  }
  return false;
}

/** The guard for one state dir: checks paths by name at command time and by handle at bind time. */
export class StateDirGuard {
  constructor(readonly stateDir: string) {}

  private async stateLocation(mounts: readonly MountEntry[]): Promise<Location | undefined> {
    // Not created yet: nothing of it can be exposed, and nothing can alias it.
    const real = await realpath(this.stateDir).catch(() => undefined);
    return real === undefined ? undefined : locate(real, mounts);
  }

  /**
   * Refuses (InvalidArgument naming `field`) a source that does not exist or whose real location overlaps the
   * state dir. Changes nothing; resolves with the real path.
   */
  async check(source: string, field: string): Promise<string> {
    let real: string;
    try {
      real = await realpath(source);
    } catch (err) {
      throw new InvalidArgument(field, `${source} does not exist (${(err as NodeJS.ErrnoException).code})`);
    }
    await this.refuseOverlap(real, source, field);
    return real;
  }

  private async refuseOverlap(real: string, source: string, field: string): Promise<void> {
    const mounts = await mountTable();
    const state = await this.stateLocation(mounts);
    if (!state) return;
    const alias = real === source ? '' : ` (really ${real})`;
    if (overlaps(await locate(real, mounts), state)) {
      throw new InvalidArgument(field, `${source}${alias} overlaps the sandboxd state dir ${this.stateDir}`);
    }
    // A hard link is a name no path rule can see: a file linked elsewhere from the state dir (its event log)
    // has the same inode as one inside it.
    const s = await stat(real);
    if (!s.isDirectory() && s.nlink > 1 && s.dev === state.dev) {
      const skip = new Set(mounts.map((m) => m.point));
      if (await holdsInode(await realpath(this.stateDir), s.dev, s.ino, skip)) {
        throw new InvalidArgument(
          field,
          `${source}${alias} is a hard link to a file of the sandboxd state dir ${this.stateDir}`,
        );
      }
    }
  }

  /**
   * Opens `source` as a handle (O_PATH, the last component not followed) and checks what the handle really is,
   * so that binding `/proc/<pid>/fd/<fd>` binds what was checked even if a name is swapped for a symlink in
   * between. The caller closes the handle once the bind is done.
   */
  async openChecked(source: string, field: string): Promise<CheckedSource> {
    const real = await this.check(source, field);
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(real, O_PATH | O_NOFOLLOW);
    } catch (err) {
      throw new InvalidArgument(field, `${source} cannot be opened (${(err as NodeJS.ErrnoException).code})`);
    }
    try {
      const opened = await readlink(`/proc/self/fd/${handle.fd}`);
      // A name changed between the check and the open: check what was opened, not what was named.
      if (opened !== real) await this.refuseOverlap(opened, source, field);
      const s = await handle.stat();
      return {
        path: `/proc/${process.pid}/fd/${handle.fd}`,
        dev: s.dev,
        ino: s.ino,
        isDirectory: s.isDirectory(),
        close: () => handle.close(),
      };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }
}

/** A checked source held open: bind `path` (mount -c, no canonicalising), then close. */
export interface CheckedSource {
  /** `/proc/<pid>/fd/<n>`: the opened inode itself, for mount(2). */
  readonly path: string;
  readonly dev: number;
  readonly ino: number;
  readonly isDirectory: boolean;
  close(): Promise<void>;
}

/**
 * Every host path a container create would bind (the rootfs, the bundle's own binds, the client's volumes),
 * checked by name before anything is recorded; the bind itself checks again through a handle (volumes.ts).
 */
export async function checkContainerSources(
  guard: StateDirGuard,
  translation: Pick<GuestTranslation, 'rootfs' | 'binds'>,
  mounts: readonly { source: string }[] | undefined,
): Promise<void> {
  await guard.check(translation.rootfs, 'bundle');
  for (const bind of translation.binds) await guard.check(bind.source, 'bundle');
  for (const [i, m] of (mounts ?? []).entries()) await guard.check(m.source, `mounts.${i}.source`);
}
