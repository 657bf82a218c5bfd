// ensureGuestImage: builds the versioned, content-hashed guest image (kernel, initrd, guest root) once, then finds it fast.
import { readFileSync } from 'node:fs';
import { mkdir, stat, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import { Internal } from '../errors/index.js';
import type { GuestImagePaths } from '../hypervisor/index.js';
import { assembleImage } from './assemble.js';
import { aptListsMtime, builderHash, fastPath, readState, stampOf, writeState } from './build-state.js';
import { defaultImageCacheDir, imagePaths } from './cache-layout.js';
import { gatherInputs } from './inputs.js';
import { pruneCache } from './prune.js';
import { RECIPE_VERSION, versionOf } from './version.js';

export interface EnsureGuestImageOptions {
  /** Where images live (`<cacheDir>/<version>/`); default defaultImageCacheDir(). */
  readonly cacheDir?: string;
  readonly logger?: Logger;
  /** Project whose src/guest/main.ts and proto/agent.proto go into the image; default: this package's root. */
  readonly projectDir?: string;
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

async function slowPath(cacheDir: string, projectDir: string, logger: Logger): Promise<GuestImagePaths> {
  const started = Date.now();
  await mkdir(cacheDir, { recursive: true });
  const previous = await readState(cacheDir);
  const aptMtime = await aptListsMtime();
  const { inputs, modules, moduleHashes, hashes, watched } = await gatherInputs(
    cacheDir,
    projectDir,
    previous,
    aptMtime,
    logger,
  );
  const { kernelPackage } = inputs;
  const version = versionOf(inputs, moduleHashes);
  const paths = imagePaths(cacheDir, version);
  const built = await stat(paths.rootImage ?? paths.rootDir).catch(() => undefined);
  if (!built) {
    logger.info({ version, agent: inputs.agent !== undefined, kernelPackage }, 'image: building');
    await assembleImage(cacheDir, version, inputs, modules, logger);
  }

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
  await pruneCache(cacheDir, version, logger).catch((error: unknown) =>
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
