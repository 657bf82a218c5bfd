// Gathering what goes into an image: the kernel (apt), the init, the agent, the console helper, host files, hashed.
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { AGENT_ENTRY, AGENT_PROTO, bundleAgent } from './agent.js';
import { sha256File } from './blobs.js';
import type { BuildState, HashCacheEntry } from './build-state.js';
import { CONSOLE_HELPER_SOURCE, compileConsoleHelper } from './console.js';
import { busyboxApplets, collectHostFiles, guestBinaries } from './hostfiles.js';
import {
  downloadKernelDeb,
  extractKernel,
  newestCachedKernelPackage,
  resolveKernelPackage,
} from './kernel.js';
import type { ImageInputs } from './version.js';

/** Path of the guest init script (PID 1 of every guest) in the project. */
export function guestInitPath(projectDir: string): string {
  return join(projectDir, 'src', 'image', 'guest-init.sh');
}

export interface GatheredInputs {
  readonly inputs: ImageInputs;
  /** The bytes of the kernel modules the initrd carries, by name, in kernel.modules order. */
  readonly modules: ReadonlyMap<string, Buffer>;
  readonly moduleHashes: readonly string[];
  /** Each host file's hash with the size and mtime it was taken at: the next build reuses it if they hold. */
  readonly hashes: Record<string, HashCacheEntry>;
  /** Everything whose change must trigger a rebuild; stats of these are all the fast path does. */
  readonly watched: ReadonlySet<string>;
}

/**
 * Reads and hashes the inputs of an image for `projectDir`, downloading the kernel package into
 * `<cacheDir>/downloads` if needed. `previous` (the last build's state) saves apt-cache and rehashing
 * when the apt lists (`aptMtime`) and the files did not move. Throws Internal naming the failed step.
 */
export async function gatherInputs(
  cacheDir: string,
  projectDir: string,
  previous: BuildState | undefined,
  aptMtime: number,
  logger: Logger,
): Promise<GatheredInputs> {
  const downloads = join(cacheDir, 'downloads');
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

  const inputs: ImageInputs = {
    kernelPackage,
    kernel,
    initScript,
    agent,
    proto,
    console: consoleHelper,
    hostFiles: hashed,
    applets,
  };
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
  return { inputs, modules, moduleHashes, hashes, watched };
}
