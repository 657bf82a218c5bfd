// What the last build saw (<cacheDir>/state.json), and the fast path it allows: stats only when nothing moved.
import { createHash } from 'node:crypto';
import { readdir, readFile, rename, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GuestImagePaths } from '../hypervisor/index.js';
import { fsyncPath, writeFileSynced } from '../store/index.js';
import { imagePaths, tmpName, VERSION_PATTERN } from './cache-layout.js';
import { RECIPE_VERSION } from './version.js';

const STATE_FILE = 'state.json';
const APT_LISTS = '/var/lib/apt/lists';

export interface InputStamp {
  readonly path: string;
  /** -1 when the file did not exist (its appearance must trigger a rebuild too). */
  readonly size: number;
  readonly mtimeMs: number;
}

export interface HashCacheEntry {
  readonly size: number;
  readonly mtimeMs: number;
  readonly sha256: string;
}

/** What the last build saw; lets the next call skip all work when no input's size or mtime moved. */
export interface BuildState {
  readonly recipe: number;
  /** Hash of the running builder's code: a changed recipe is re-run (the version moves only if the output does). */
  readonly builder: string;
  /** The project whose agent and init went in: another project dir means other inputs. */
  readonly projectDir: string;
  readonly version: string;
  readonly kernelPackage: string;
  readonly aptListsMtimeMs: number;
  readonly inputs: readonly InputStamp[];
  readonly hashes: Readonly<Record<string, HashCacheEntry>>;
}

let builderHashPromise: Promise<string> | undefined;

/**
 * Content hash of this builder's own modules (every dist/src/image/*.js, or the .ts under tsx: the builder
 * spans this whole folder, so it must stay flat). By content, not mtime: every `npm run build` rewrites
 * dist with fresh mtimes. Computed once per process (~50 KB).
 */
export function builderHash(): Promise<string> {
  builderHashPromise ??= (async () => {
    const dir = dirname(fileURLToPath(import.meta.url));
    const names = (await readdir(dir)).filter((name) => /\.(js|ts)$/.test(name)).sort();
    const hash = createHash('sha256');
    for (const name of names) {
      hash.update(`${name}\n`);
      hash.update(await readFile(join(dir, name)));
    }
    return hash.digest('hex').slice(0, 16);
  })();
  return builderHashPromise;
}

export async function stampOf(path: string): Promise<InputStamp> {
  try {
    const info = await stat(path);
    return { path, size: info.size, mtimeMs: info.mtimeMs };
  } catch {
    return { path, size: -1, mtimeMs: 0 };
  }
}

/** The apt lists' mtime (-1 without them): apt-cache's answers change only when it does. */
export async function aptListsMtime(): Promise<number> {
  return stat(APT_LISTS).then(
    (info) => info.mtimeMs,
    () => -1,
  );
}

/** The last build's state; undefined when there is none, it is unreadable, or another recipe wrote it. */
export async function readState(cacheDir: string): Promise<BuildState | undefined> {
  try {
    const state = JSON.parse(await readFile(join(cacheDir, STATE_FILE), 'utf8')) as BuildState;
    return state.recipe === RECIPE_VERSION && Array.isArray(state.inputs) ? state : undefined;
  } catch {
    return undefined;
  }
}

/** Replaces the state atomically (temp file, fsync, rename, fsync of the dir). */
export async function writeState(cacheDir: string, state: BuildState): Promise<void> {
  const tmp = join(cacheDir, tmpName('state'));
  await writeFileSynced(tmp, `${JSON.stringify(state)}\n`);
  await rename(tmp, join(cacheDir, STATE_FILE));
  await fsyncPath(cacheDir);
}

/** The cached image when nothing changed since the last build: only stats, no hashing, no apt, no esbuild. */
export async function fastPath(cacheDir: string, projectDir: string): Promise<GuestImagePaths | undefined> {
  const [state, builder] = await Promise.all([readState(cacheDir), builderHash()]);
  if (!state || state.builder !== builder || state.projectDir !== projectDir) return undefined;
  if (!VERSION_PATTERN.test(state.version)) return undefined;
  const paths = imagePaths(cacheDir, state.version);
  const [rootOk, aptMtime, stamps] = await Promise.all([
    stat(paths.rootImage ?? paths.rootDir).then(
      () => true,
      () => false,
    ),
    aptListsMtime(),
    Promise.all(state.inputs.map((input) => stampOf(input.path))),
  ]);
  if (!rootOk || aptMtime !== state.aptListsMtimeMs) return undefined;
  for (let i = 0; i < stamps.length; i++) {
    const now = stamps[i]!;
    const then = state.inputs[i]!;
    if (now.size !== then.size || now.mtimeMs !== then.mtimeMs) return undefined;
  }
  return paths;
}
