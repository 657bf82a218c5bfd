// Host cgroup directories: made (with the parents), joined by a pid, removed; and the check the daemon makes
// before it takes directories from a client. What is written there is only pids and, best effort, what lets the
// directory account for what joins it (v1 memory: move the pages charged before; v2: the parent's controllers).
import { mkdir, readFile, rmdir, stat, statfs, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { InvalidArgument } from '../errors/index.js';
import { CGROUP_DIR_PATTERN, cgroupDirsFor, hierarchiesOf, ownCgroupsOf } from './paths.js';

const CGROUP_SUPER_MAGIC = 0x27e0eb;
const CGROUP2_SUPER_MAGIC = 0x63677270;

/** The directories `cgroupsPath` names on this host (see cgroupDirsFor), from our own mount table and cgroups. */
export async function hostCgroupDirs(cgroupsPath: string, o: { systemd?: boolean } = {}): Promise<string[]> {
  const [mountinfo, own] = await Promise.all([
    readFile('/proc/self/mountinfo', 'utf8'),
    readFile('/proc/self/cgroup', 'utf8'),
  ]);
  return cgroupDirsFor({
    cgroupsPath,
    ...(o.systemd ? { systemd: true } : {}),
    hierarchies: hierarchiesOf(mountinfo),
    own: ownCgroupsOf(own),
  });
}

/** Makes each directory (parents too); the ones it made, so that an undo removes only those. */
export async function createCgroups(dirs: readonly string[]): Promise<string[]> {
  const made: string[] = [];
  for (const dir of dirs) {
    const v2 = (await fsTypeOf(dirname(dir))) === CGROUP2_SUPER_MAGIC;
    const missing: string[] = [];
    for (let d = dir; !(await exists(d)); d = dirname(d)) missing.unshift(d);
    for (const d of missing) {
      if (v2) await enableControllers(dirname(d));
      await mkdir(d);
      if (!v2) await inheritCpuset(d);
    }
    if (missing.at(-1) === dir) made.push(dir);
    // v1 memory: pages a process touched before it joined move with it, so the VM's memory is counted here.
    if (!v2) await writeFile(join(dir, 'memory.move_charge_at_immigrate'), '3').catch(() => undefined);
  }
  return made;
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

// A new v1 cpuset cgroup starts with no cpus and no memory nodes, and nobody can join it: runc copies the
// parent's, and so does this.
async function inheritCpuset(dir: string): Promise<void> {
  for (const file of ['cpuset.cpus', 'cpuset.mems']) {
    const own = await readFile(join(dir, file), 'utf8').catch(() => undefined);
    if (own === undefined || own.trim() !== '') continue;
    await writeFile(join(dir, file), await readFile(join(dirname(dir), file), 'utf8'));
  }
}

// The file system type of `path` or of its nearest existing ancestor.
async function fsTypeOf(path: string): Promise<number | undefined> {
  for (let p = path; ; p = dirname(p)) {
    const fs = await statfs(p).catch(() => undefined);
    if (fs) return fs.type;
    if (p === '/') return undefined;
  }
}

// A v2 cgroup accounts for a controller only when its parent hands it down (cgroup.subtree_control); best effort:
// a parent that holds processes itself cannot ("no internal processes"), and then the directory only groups.
async function enableControllers(parent: string): Promise<void> {
  const available = (await readFile(join(parent, 'cgroup.controllers'), 'utf8').catch(() => '')).trim();
  if (!available) return;
  const wanted = available
    .split(/\s+/)
    .map((c) => `+${c}`)
    .join(' ');
  await writeFile(join(parent, 'cgroup.subtree_control'), wanted).catch(() => undefined);
}

/** Moves process `pid` (all its threads) into each directory. */
export async function joinCgroups(dirs: readonly string[], pid: number): Promise<void> {
  for (const dir of dirs) await writeFile(join(dir, 'cgroup.procs'), `${pid}\n`);
}

/**
 * Removes each directory (not its parents, as runc leaves them). A directory still holding a process (one that
 * is exiting) is tried again for up to `waitMs`; one already gone counts as removed. Throws what is left.
 */
export async function removeCgroups(dirs: readonly string[], waitMs = 5000): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (const dir of dirs) {
    for (;;) {
      try {
        await rmdir(dir);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code !== 'EBUSY' || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
}

/** The pids in a cgroup directory (its cgroup.procs); empty when it is gone. */
export async function cgroupPids(dir: string): Promise<number[]> {
  const text = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map(Number);
}

/**
 * What the daemon checks before it records directories a client gave it (config.hostCgroup): each is a cgroup
 * directory that exists now. InvalidArgument naming the member otherwise.
 */
export async function checkCgroupDirs(dirs: readonly string[], field: string): Promise<void> {
  for (const [i, dir] of dirs.entries()) {
    const at = `${field}.${i}`;
    if (!CGROUP_DIR_PATTERN.test(dir)) {
      throw new InvalidArgument(at, `${JSON.stringify(dir)} is not a normalised path under /sys/fs/cgroup`);
    }
    const fs = await statfs(dir).catch(() => undefined);
    if (!fs || (fs.type !== CGROUP_SUPER_MAGIC && fs.type !== CGROUP2_SUPER_MAGIC)) {
      throw new InvalidArgument(at, `${dir} is not a cgroup directory`);
    }
    const procs = await stat(join(dir, 'cgroup.procs')).catch(() => undefined);
    if (!procs?.isFile()) throw new InvalidArgument(at, `${dir} has no cgroup.procs`);
  }
}
