// Where an OCI spec's linux.cgroupsPath lands on this host, as runc's cgroupfs and systemd drivers place it: one
// directory per mounted hierarchy (v1: each controller's; v2: the one tree; hybrid: the v1 ones and the unified
// tree, as runc joins it). Pure: the mount table and the caller's own cgroups come in as text.
import { InvalidArgument } from '../errors/index.js';

export interface Hierarchy {
  /** Where it is mounted (/sys/fs/cgroup/memory, /sys/fs/cgroup). */
  readonly mount: string;
  /** The path inside the hierarchy that the mount shows at its top ('/' unless in a cgroup namespace). */
  readonly root: string;
  readonly version: 1 | 2;
  /** v1: its controllers (and name=… of a named one); v2: empty. */
  readonly controllers: readonly string[];
}

/** The cgroup hierarchies in a /proc/PID/mountinfo text. */
export function hierarchiesOf(mountinfo: string): Hierarchy[] {
  const out: Hierarchy[] = [];
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mountpoint options [optional…] - fstype source superoptions
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const f = left.split(' ');
    const [fstype, , superOptions = ''] = right.split(' ');
    const root = unescapeMount(f[3] ?? '/');
    const mount = unescapeMount(f[4] ?? '');
    if (fstype === 'cgroup2') out.push({ mount, root, version: 2, controllers: [] });
    else if (fstype === 'cgroup') {
      const known = superOptions.split(',').filter((o) => !OPTIONS.has(o) && !o.startsWith('release_agent='));
      out.push({ mount, root, version: 1, controllers: known });
    }
  }
  return out;
}

// Mount options of a v1 hierarchy that are not controllers.
const OPTIONS = new Set([
  'rw',
  'ro',
  'noprefix',
  'clone_children',
  'xattr',
  'cpuset_v2_mode',
  'favordynmods',
]);

// mountinfo escapes space, tab, newline and backslash as \ooo.
const unescapeMount = (s: string) =>
  s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));

/** A /proc/PID/cgroup text: each hierarchy's path for that process, keyed by its controllers ('' for v2). */
export function ownCgroupsOf(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

/**
 * systemd's cgroup for a runc-style `slice:prefix:name` (runc --systemd-cgroup): the slice expanded as systemd
 * nests slices (a-b.slice under a.slice), default system.slice, then the unit `prefix-name.scope` (or `name` itself
 * when it is a slice). The path systemd would give the transient unit runc asks it for.
 */
export function systemdCgroupPath(cgroupsPath: string, field = 'linux.cgroupsPath'): string {
  const parts = cgroupsPath.split(':');
  if (parts.length !== 3) {
    throw new InvalidArgument(
      field,
      `${JSON.stringify(cgroupsPath)} is not slice:prefix:name (--systemd-cgroup)`,
    );
  }
  const [slice, prefix, name] = parts as [string, string, string];
  if (!name || /[/\0]/.test(slice + prefix + name)) {
    throw new InvalidArgument(
      field,
      `${JSON.stringify(cgroupsPath)} is not slice:prefix:name (--systemd-cgroup)`,
    );
  }
  const unit = name.endsWith('.slice') ? name : `${prefix ? `${prefix}-` : ''}${name}.scope`;
  return `${expandSlice(slice || 'system.slice', field)}/${unit}`;
}

function expandSlice(slice: string, field: string): string {
  if (!slice.endsWith('.slice') || slice.startsWith('-') || slice.includes('--')) {
    throw new InvalidArgument(field, `${JSON.stringify(slice)} is not a systemd slice name`);
  }
  if (slice === '-.slice') return '';
  const stem = slice.slice(0, -'.slice'.length);
  let path = '';
  let name = '';
  for (const part of stem.split('-')) {
    name = name ? `${name}-${part}` : part;
    path += `/${name}.slice`;
  }
  return path;
}

export interface Placement {
  readonly cgroupsPath: string;
  /** runc --systemd-cgroup: `slice:prefix:name`. */
  readonly systemd?: boolean;
  readonly hierarchies: readonly Hierarchy[];
  /** The caller's own cgroups (ownCgroupsOf): a relative path is under them, as runc makes it. */
  readonly own: ReadonlyMap<string, string>;
}

/**
 * The directories, one per hierarchy, that `cgroupsPath` names: an absolute path from each hierarchy's top, a
 * relative one under the caller's own cgroup there. InvalidArgument(linux.cgroupsPath) for a path that climbs
 * out ('..') or a malformed systemd one.
 */
export function cgroupDirsFor(p: Placement): string[] {
  const field = 'linux.cgroupsPath';
  const inner = p.systemd ? systemdCgroupPath(p.cgroupsPath, field) : p.cgroupsPath;
  const segments = inner.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..') || inner.includes('\0')) {
    throw new InvalidArgument(field, `${JSON.stringify(p.cgroupsPath)} must not climb out with '..'`);
  }
  if (segments.length === 0) throw new InvalidArgument(field, 'names no cgroup below the top');
  const absolute = inner.startsWith('/');
  const dirs: string[] = [];
  for (const h of p.hierarchies) {
    const key = h.version === 2 ? '' : h.controllers.join(',');
    const base = absolute ? '/' : (p.own.get(key) ?? '/');
    const full = joinPath(base, ...segments);
    // A mount that shows only part of the hierarchy (a cgroup namespace): the path is relative to what it shows.
    const shown =
      h.root === '/' ? full : full.startsWith(`${h.root}/`) ? full.slice(h.root.length) : undefined;
    if (shown === undefined) continue;
    dirs.push(joinPath(h.mount, shown));
  }
  return dirs;
}

const joinPath = (...parts: string[]) =>
  `/${parts
    .flatMap((p) => p.split('/'))
    .filter((s) => s !== '')
    .join('/')}`;

/** What a host cgroup directory must look like to be joined: absolute, normalised, under /sys/fs/cgroup. */
export const CGROUP_DIR_PATTERN = /^\/sys\/fs\/cgroup(\/([^/.\0][^/\0]*|\.[^/.\0][^/\0]*|\.\.[^/\0]+))+$/;
