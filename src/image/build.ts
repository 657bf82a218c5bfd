// ensureGuestImage: builds the versioned, content-hashed guest image (kernel, initrd, guest root) once, then finds it fast.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import {
  chmod,
  copyFile,
  link,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  utimes,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import pino, { type Logger } from 'pino';
import { Internal } from '../errors/index.js';
import type { GuestImagePaths } from '../hypervisor/index.js';
import { fsyncPath, writeFileSynced } from '../store/index.js';
import { AGENT_ENTRY, AGENT_PROTO, bundleAgent } from './agent.js';
import {
  CONSOLE_HELPER_SOURCE,
  CONSOLE_HELPER_TARGET,
  type ConsoleHelper,
  compileConsoleHelper,
} from './console.js';
import { type CpioEntry, writeCpio } from './cpio.js';
import { busyboxApplets, collectHostFiles, guestBinaries, type HostFile } from './hostfiles.js';
import {
  downloadKernelDeb,
  type ExtractedKernel,
  extractKernel,
  newestCachedKernelPackage,
  resolveKernelPackage,
} from './kernel.js';
import { pvhKernelOf } from './pvh.js';
import { makeRootImage, ROOT_IMAGE_FILE } from './rootfs.js';

/**
 * Version of this recipe. Bump it whenever the builder changes what it puts into an image in a way the
 * hashed inputs do not show (layout, initrd members, file modes): it is part of every image version.
 */
export const RECIPE_VERSION = 7;
/** The kernel QEMU boots: a PVH ELF unpacked from Debian's bzImage when it can be (pvh.ts), else the bzImage. */
const KERNEL_FILE = 'kernel';

/** How many image versions prune keeps (newest by last use), besides any used in the last RECENT_USE_MS. */
const KEEP_VERSIONS = 2;
/** A VM started in the last half hour may still run on an older version: its 9p root must not vanish. */
const RECENT_USE_MS = 30 * 60 * 1000;
const STATE_FILE = 'state.json';
const APT_LISTS = '/var/lib/apt/lists';
const VERSION_PATTERN = /^[0-9a-f]{16}$/;

export interface EnsureGuestImageOptions {
  /** Where images live (`<cacheDir>/<version>/`); default defaultImageCacheDir(). */
  readonly cacheDir?: string;
  readonly logger?: Logger;
  /** Project whose src/guest/main.ts and proto/agent.proto go into the image; default: this package's root. */
  readonly projectDir?: string;
}

/** SANDBOXD_IMAGE_DIR, else /var/cache/sandboxd/images. */
export function defaultImageCacheDir(): string {
  return process.env.SANDBOXD_IMAGE_DIR ?? '/var/cache/sandboxd/images';
}

/** The sandboxd package root (the directory of its package.json), found from this module's location. */
export function defaultProjectDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'sandboxd') return dir;
    } catch {
      // not here: keep walking up
    }
    const parent = dirname(dir);
    if (parent === dir)
      throw new Internal('image: project dir', 'no sandboxd package.json above the image module');
    dir = parent;
  }
}

/** Path of the guest init script (PID 1 of every guest) in the project. */
export function guestInitPath(projectDir: string): string {
  return join(projectDir, 'src', 'image', 'guest-init.sh');
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

interface InputStamp {
  readonly path: string;
  /** -1 when the file did not exist (its appearance must trigger a rebuild too). */
  readonly size: number;
  readonly mtimeMs: number;
}

interface HashCacheEntry {
  readonly size: number;
  readonly mtimeMs: number;
  readonly sha256: string;
}

/** What the last build saw; lets the next call skip all work when no input's size or mtime moved. */
interface BuildState {
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
 * Content hash of this builder's own modules (dist/src/image/*.js, or the .ts under tsx). By content, not
 * mtime: every `npm run build` rewrites dist with fresh mtimes. Computed once per process (~50 KB).
 */
function builderHash(): Promise<string> {
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

async function stampOf(path: string): Promise<InputStamp> {
  try {
    const info = await stat(path);
    return { path, size: info.size, mtimeMs: info.mtimeMs };
  } catch {
    return { path, size: -1, mtimeMs: 0 };
  }
}

async function aptListsMtime(): Promise<number> {
  return stat(APT_LISTS).then(
    (info) => info.mtimeMs,
    () => -1,
  );
}

async function readState(cacheDir: string): Promise<BuildState | undefined> {
  try {
    const state = JSON.parse(await readFile(join(cacheDir, STATE_FILE), 'utf8')) as BuildState;
    return state.recipe === RECIPE_VERSION && Array.isArray(state.inputs) ? state : undefined;
  } catch {
    return undefined;
  }
}

/** The cached image when nothing changed since the last build: only stats, no hashing, no apt, no esbuild. */
async function fastPath(cacheDir: string, projectDir: string): Promise<GuestImagePaths | undefined> {
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

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function tmpName(prefix: string): string {
  return `.tmp-${prefix}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Puts the bytes of `source` into the content-addressed blob store once; returns the blob's path. */
async function ensureBlob(cacheDir: string, source: string, sha256: string): Promise<string> {
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
async function placeBlob(blob: string, source: string, target: string): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  try {
    await link(blob, target);
  } catch {
    await copyFile(source, target);
    await chmod(target, 0o755);
  }
}

interface Inputs {
  readonly kernelPackage: string;
  readonly kernel: ExtractedKernel;
  readonly initScript: Buffer;
  readonly agent: { code: Uint8Array; inputs: readonly string[] } | undefined;
  readonly proto: Buffer | undefined;
  readonly console: ConsoleHelper | undefined;
  readonly hostFiles: readonly (HostFile & { sha256: string })[];
  readonly applets: readonly { target: string; link: string }[];
}

function versionOf(inputs: Inputs, moduleHashes: readonly string[]): string {
  const hash = createHash('sha256');
  const line = (text: string): void => {
    hash.update(text);
    hash.update('\n');
  };
  line(`recipe ${RECIPE_VERSION}`);
  line(`kernel ${inputs.kernelPackage} ${inputs.kernel.debPath.split('/').at(-1)}`);
  line(`modules ${inputs.kernel.modules.join(',')} ${moduleHashes.join(',')}`);
  line(`init ${createHash('sha256').update(inputs.initScript).digest('hex')}`);
  line(`agent ${inputs.agent ? createHash('sha256').update(inputs.agent.code).digest('hex') : 'none'}`);
  line(`proto ${inputs.proto ? createHash('sha256').update(inputs.proto).digest('hex') : 'none'}`);
  // By source: the compiled bytes may differ between gcc runs without the helper changing.
  line(
    `console ${inputs.console ? createHash('sha256').update(inputs.console.source).digest('hex') : 'none'}`,
  );
  for (const file of [...inputs.hostFiles].sort((a, b) => a.target.localeCompare(b.target))) {
    line(`file ${file.target} ${file.sha256}`);
  }
  return hash.digest('hex').slice(0, 16);
}

function initrdEntries(inputs: Inputs, busybox: Buffer, modules: ReadonlyMap<string, Buffer>): CpioEntry[] {
  const entries: CpioEntry[] = [];
  for (const dir of [
    'bin',
    'sbin',
    'dev',
    'proc',
    'sys',
    'newroot',
    'etc',
    'etc/sandboxd',
    'lib',
    'lib/modules',
  ]) {
    entries.push({ kind: 'dir', path: dir });
  }
  // The kernel opens /dev/console for PID 1 before any devtmpfs exists.
  entries.push({ kind: 'chardev', path: 'dev/console', major: 5, minor: 1, mode: 0o600 });
  entries.push({ kind: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 });
  entries.push({ kind: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 });
  const seen = new Set(['bin/busybox']);
  for (const applet of inputs.applets) {
    const name = applet.target.split('/').at(-1)!;
    const path = applet.target.startsWith('usr/sbin/') ? `sbin/${name}` : `bin/${name}`;
    if (seen.has(path)) continue;
    seen.add(path);
    entries.push({ kind: 'symlink', path, target: '/bin/busybox' });
  }
  entries.push({
    kind: 'file',
    path: 'etc/sandboxd/modules',
    data: Buffer.from(`${inputs.kernel.modules.join('\n')}\n`),
  });
  for (const [name, data] of modules) entries.push({ kind: 'file', path: `lib/modules/${name}.ko`, data });
  entries.push({ kind: 'file', path: 'init', data: inputs.initScript, mode: 0o755 });
  return entries;
}

async function buildImage(
  cacheDir: string,
  version: string,
  inputs: Inputs,
  modules: ReadonlyMap<string, Buffer>,
  logger: Logger,
): Promise<void> {
  const tmp = join(cacheDir, tmpName(version));
  const root = join(tmp, 'root');
  try {
    for (const dir of ['usr/bin', 'usr/sbin', 'usr/lib', 'usr/lib64', 'opt/sandboxd']) {
      await mkdir(join(root, dir), { recursive: true });
    }
    for (const file of inputs.hostFiles) {
      const blob = await ensureBlob(cacheDir, file.real, file.sha256);
      await placeBlob(blob, file.real, join(root, file.target));
    }
    for (const applet of inputs.applets) await symlink(applet.link, join(root, applet.target));
    const manifest = {
      version,
      recipe: RECIPE_VERSION,
      kernelPackage: inputs.kernelPackage,
      kernelDeb: inputs.kernel.debPath.split('/').at(-1),
      modules: inputs.kernel.modules,
      agent: inputs.agent !== undefined,
      proto: inputs.proto !== undefined,
      console: inputs.console !== undefined,
      files: Object.fromEntries(inputs.hostFiles.map((file) => [file.target, file.sha256])),
      builtAt: new Date().toISOString(),
    };
    const manifestText = `${JSON.stringify(manifest, null, 2)}\n`;
    if (inputs.agent) await writeFileSynced(join(root, 'opt/sandboxd/agent.mjs'), inputs.agent.code);
    if (inputs.proto) await writeFileSynced(join(root, 'opt/sandboxd/agent.proto'), inputs.proto);
    if (inputs.console)
      await writeFileSynced(join(root, CONSOLE_HELPER_TARGET), inputs.console.binary, 0o755);
    await writeFileSynced(join(root, 'opt/sandboxd/image.json'), manifestText);

    const busybox = await readFile(guestBinaries().busybox);
    const initrd = gzipSync(writeCpio(initrdEntries(inputs, busybox, modules)), { level: 9 });
    await writeFileSynced(join(tmp, 'initrd.gz'), initrd);
    const bzImage = await readFile(inputs.kernel.vmlinuz);
    const pvh = await pvhKernelOf(bzImage).catch((error: unknown) => {
      logger.warn({ err: error }, 'image: the kernel could not be unpacked; booting the bzImage');
      return undefined;
    });
    logger.info({ kernel: pvh ? 'pvh' : 'bzImage', bytes: (pvh ?? bzImage).length }, 'image: kernel');
    await writeFileSynced(join(tmp, KERNEL_FILE), pvh ?? bzImage);
    await writeFileSynced(join(tmp, 'image.json'), manifestText);
    for (const dir of ['usr/bin', 'usr/sbin', 'usr/lib', 'opt/sandboxd', ''])
      await fsyncPath(join(root, dir));
    await makeRootImage(root, join(tmp, ROOT_IMAGE_FILE), version);
    await fsyncPath(tmp);

    try {
      await rename(tmp, join(cacheDir, version));
    } catch (error) {
      // Another process built the same version first: theirs is as good as ours.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      logger.debug({ version }, 'image: version built concurrently elsewhere');
    }
    await fsyncPath(cacheDir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function writeState(cacheDir: string, state: BuildState): Promise<void> {
  const tmp = join(cacheDir, tmpName('state'));
  await writeFileSynced(tmp, `${JSON.stringify(state)}\n`);
  await rename(tmp, join(cacheDir, STATE_FILE));
  await fsyncPath(cacheDir);
}

/** True when the temp dir's builder process (its pid is in the name) no longer exists: a crashed build. */
function builderGone(name: string): boolean {
  const pid = Number(/^\.tmp-[^-]+-(\d+)-[0-9a-f]+$/.exec(name)?.[1] ?? Number.NaN);
  if (!Number.isInteger(pid) || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Removes versions beyond the newest KEEP_VERSIONS (by last use) that nobody used recently, stale temp dirs, orphan blobs. */
async function prune(cacheDir: string, current: string, logger: Logger): Promise<void> {
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

async function slowPath(cacheDir: string, projectDir: string, logger: Logger): Promise<GuestImagePaths> {
  const started = Date.now();
  await mkdir(cacheDir, { recursive: true });
  const previous = await readState(cacheDir);
  const downloads = join(cacheDir, 'downloads');
  const aptMtime = await aptListsMtime();

  // apt-cache costs ~1 s: its answer only changes when the apt lists do.
  const known = previous?.aptListsMtimeMs === aptMtime ? previous.kernelPackage : undefined;
  const kernelPackage =
    known ??
    (await resolveKernelPackage().catch(async (error: unknown) => {
      // Offline or apt unusable: a kernel downloaded earlier still makes a working image.
      const cached = await newestCachedKernelPackage(downloads);
      if (!cached) throw error;
      logger.warn({ err: error, kernelPackage: cached }, 'image: apt-cache failed; using the cached kernel');
      return cached;
    }));
  const debPath = await downloadKernelDeb(downloads, kernelPackage, logger);
  const kernel = await extractKernel(downloads, kernelPackage, debPath, logger);

  const initPath = guestInitPath(projectDir);
  const protoPath = join(projectDir, AGENT_PROTO);
  const [initScript, agent, proto, consoleHelper, hostFiles] = await Promise.all([
    readFile(initPath),
    bundleAgent(projectDir),
    readFile(protoPath).catch(() => undefined),
    compileConsoleHelper(projectDir),
    collectHostFiles(),
  ]);
  if (!agent)
    logger.warn({ entry: AGENT_ENTRY }, 'image: no guest agent yet; the guest will power off at boot');

  const hashes: Record<string, HashCacheEntry> = {};
  const hashed = await Promise.all(
    hostFiles.map(async (file) => {
      const info = await stat(file.real);
      const cached = previous?.hashes[file.real];
      const sha256 =
        cached && cached.size === info.size && cached.mtimeMs === info.mtimeMs
          ? cached.sha256
          : await sha256File(file.real);
      hashes[file.real] = { size: info.size, mtimeMs: info.mtimeMs, sha256 };
      return { ...file, sha256 };
    }),
  );
  const bins = guestBinaries();
  const applets = await busyboxApplets(bins.busybox);
  const modules = new Map<string, Buffer>();
  for (const name of kernel.modules) modules.set(name, await readFile(join(kernel.modulesDir, `${name}.ko`)));
  const moduleHashes = [...modules.values()].map((data) =>
    createHash('sha256').update(data).digest('hex').slice(0, 16),
  );

  const inputs: Inputs = {
    kernelPackage,
    kernel,
    initScript,
    agent,
    proto,
    console: consoleHelper,
    hostFiles: hashed,
    applets,
  };
  const version = versionOf(inputs, moduleHashes);
  const paths = imagePaths(cacheDir, version);
  const built = await stat(paths.rootImage ?? paths.rootDir).catch(() => undefined);
  if (!built) {
    logger.info({ version, agent: agent !== undefined, kernelPackage }, 'image: building');
    await buildImage(cacheDir, version, inputs, modules, logger);
  }

  // Everything whose change must trigger a rebuild; stats of these are all the fast path does.
  const watched = new Set<string>([
    initPath,
    protoPath,
    join(projectDir, AGENT_ENTRY),
    join(projectDir, CONSOLE_HELPER_SOURCE),
    debPath,
    kernel.vmlinuz,
    ...hostFiles.flatMap((file) => [file.source, file.real]),
    ...(agent?.inputs ?? []),
  ]);
  const inputsStamps = await Promise.all([...watched].sort().map((path) => stampOf(path)));
  await writeState(cacheDir, {
    recipe: RECIPE_VERSION,
    builder: await builderHash(),
    projectDir,
    version,
    kernelPackage,
    aptListsMtimeMs: aptMtime,
    inputs: inputsStamps,
    hashes,
  });
  await utimes(join(cacheDir, version), new Date(), new Date()).catch(() => undefined);
  await prune(cacheDir, version, logger).catch((error: unknown) =>
    logger.warn({ err: error }, 'image: pruning failed'),
  );
  logger.info({ version, ms: Date.now() - started, rebuilt: !built }, 'image: ready');
  return paths;
}

let sharedLogger: Logger | undefined;

function defaultLogger(): Logger {
  sharedLogger ??= pino({ name: 'sandboxd-image', level: 'info' }, pino.destination(2));
  return sharedLogger;
}

const inFlight = new Map<string, Promise<GuestImagePaths>>();

/**
 * The guest image for the current inputs, building it if needed. Idempotent and safe to call concurrently
 * (in one process calls share one build; across processes the atomic rename picks one). Returns in a few
 * milliseconds when nothing changed. Throws Internal naming the failed step (download, extract, bundle, …).
 */
export async function ensureGuestImage(options: EnsureGuestImageOptions = {}): Promise<GuestImagePaths> {
  const cacheDir = options.cacheDir ?? defaultImageCacheDir();
  const logger = options.logger ?? defaultLogger();
  const projectDir = options.projectDir ?? defaultProjectDir();
  const key = `${cacheDir}\0${projectDir}`;
  const pending = inFlight.get(key);
  if (pending) return pending;
  const work = (async () => {
    const fast = await fastPath(cacheDir, projectDir);
    if (fast) {
      // The version dir's mtime is its last use: prune keeps versions that running VMs may still need.
      await utimes(join(cacheDir, fast.version), new Date(), new Date()).catch(() => undefined);
      logger.debug({ version: fast.version }, 'image: up to date');
      return fast;
    }
    return slowPath(cacheDir, projectDir, logger);
  })();
  inFlight.set(key, work);
  try {
    return await work;
  } finally {
    inFlight.delete(key);
  }
}
