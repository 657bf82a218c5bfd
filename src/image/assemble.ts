// Assembling one image version: the guest root, the initrd, the kernel, the erofs root, published by one rename.
import { mkdir, readFile, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Logger } from 'pino';
import { fsyncPath, writeFileSynced } from '../store/index.js';
import { ensureBlob, placeBlob } from './blobs.js';
import { KERNEL_FILE, tmpName } from './cache-layout.js';
import { CONSOLE_HELPER_TARGET } from './console.js';
import { type CpioEntry, writeCpio } from './cpio.js';
import { guestBinaries } from './hostfiles.js';
import { pvhKernelOf } from './pvh.js';
import { makeRootImage, ROOT_IMAGE_FILE } from './rootfs.js';
import { type ImageInputs, RECIPE_VERSION } from './version.js';

/** The initrd: busybox and its applets, the kernel modules the init loads, the init itself. */
function initrdEntries(
  inputs: ImageInputs,
  busybox: Buffer,
  modules: ReadonlyMap<string, Buffer>,
): CpioEntry[] {
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

/**
 * Builds `<cacheDir>/<version>/` in a temp dir and renames it into place: a version dir is complete or absent.
 * A version another process published first is kept (same inputs, same image).
 */
export async function assembleImage(
  cacheDir: string,
  version: string,
  inputs: ImageInputs,
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
