// Debian's generic kernel for the guest: which package, its .deb (cached), and the vmlinuz + modules taken out of it.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Internal } from '../errors/index.js';
import { run, runChecked } from './exec.js';

/** Meta-package that always depends on the current generic kernel (not -cloud: that one lacks 9p). */
export const KERNEL_META_PACKAGE = 'linux-image-amd64';

/**
 * Modules the guest loads (file names). The first fifteen are required (virtio transport, virtio-serial, 9p for
 * the sandbox share, virtio-blk + erofs for the read-only guest root image); the rest are optional: a virtio NIC for the agent, virtio-rng entropy, and the ACPI power button read
 * through evdev (QMP system_powerdown → graceful shutdown). The insmod order is computed from each module's `depends=`
 * (GUEST.md's list puts virtio before virtio_ring, which 6.1.0-56's virtio.ko needs first).
 */
export const GUEST_MODULES: readonly string[] = [
  'virtio',
  'virtio_ring',
  'virtio_pci_legacy_dev',
  'virtio_pci_modern_dev',
  'virtio_pci',
  'virtio_console',
  'netfs',
  'fscache',
  '9pnet',
  '9pnet_virtio',
  '9p',
  'virtio_blk',
  // erofs depends on libcrc32c, which asks the crypto API for crc32c (a soft dependency: listed first).
  'crc32c_generic',
  'libcrc32c',
  'erofs',
  'failover',
  'net_failover',
  'virtio_net',
  'virtio-rng',
  'button',
  'evdev',
];

const REQUIRED_MODULES = new Set(GUEST_MODULES.slice(0, 15));

/** A kernel taken out of its package: vmlinuz and a flat dir of uncompressed `<name>.ko` files. */
export interface ExtractedKernel {
  readonly packageName: string;
  readonly debPath: string;
  readonly vmlinuz: string;
  readonly modulesDir: string;
  /** Modules present as files, in insmod order (built-in ones are left out). */
  readonly modules: readonly string[];
}

/** `linux-image-6.1.0-NN-amd64`, as apt resolves the generic meta-package today. Takes ~1 s (apt-cache). */
export async function resolveKernelPackage(): Promise<string> {
  const out = await runChecked('image: resolve kernel package', 'apt-cache', [
    'depends',
    KERNEL_META_PACKAGE,
  ]);
  const match = /Depends:\s+(linux-image-\d[^\s]*-amd64)\b/.exec(out);
  if (!match?.[1] || match[1].includes('cloud')) {
    throw new Internal('image: resolve kernel package', `no generic kernel in: ${out.trim()}`);
  }
  return match[1];
}

/** The package name of the newest kernel .deb already in `downloadsDir` (by ABI number), if any. */
export async function newestCachedKernelPackage(downloadsDir: string): Promise<string | undefined> {
  const names = await readdir(downloadsDir).catch(() => [] as string[]);
  const packages = names
    .map((name) => /^(linux-image-(\d+)\.(\d+)\.(\d+)-(\d+)-amd64)_.*\.deb$/.exec(name))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => ({ name: match[1]!, key: match.slice(2, 6).map(Number) }))
    .sort((a, b) => {
      for (let i = 0; i < 4; i++) if (a.key[i] !== b.key[i]) return a.key[i]! - b.key[i]!;
      return 0;
    });
  return packages.at(-1)?.name;
}

async function findDeb(downloadsDir: string, packageName: string): Promise<string | undefined> {
  const names = await readdir(downloadsDir).catch(() => [] as string[]);
  const debs = names.filter((name) => name.startsWith(`${packageName}_`) && name.endsWith('.deb')).sort();
  const last = debs.at(-1);
  return last === undefined ? undefined : join(downloadsDir, last);
}

/** The package's .deb in `downloadsDir`, downloaded once (with one `apt-get update` if the first try fails). */
export async function downloadKernelDeb(
  downloadsDir: string,
  packageName: string,
  logger: Logger,
): Promise<string> {
  const cached = await findDeb(downloadsDir, packageName);
  if (cached) return cached;
  await mkdir(downloadsDir, { recursive: true });
  // Download into a private dir, then rename: a crash mid-download never leaves a truncated .deb in the cache.
  const tmp = join(downloadsDir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp);
  try {
    logger.info({ packageName }, 'image: downloading kernel package');
    let result = await run('apt-get', ['download', packageName], { cwd: tmp });
    if (result.code !== 0) {
      logger.warn(
        { stderr: result.stderr.trim() },
        'image: apt-get download failed; running apt-get update once',
      );
      await runChecked('image: apt-get update', 'apt-get', ['update', '-qq']);
      result = await run('apt-get', ['download', packageName], { cwd: tmp });
    }
    if (result.code !== 0) {
      throw new Internal(
        'image: download kernel',
        `apt-get download ${packageName}: ${result.stderr.trim()}`,
      );
    }
    const deb = await findDeb(tmp, packageName);
    if (!deb) throw new Internal('image: download kernel', `apt-get download left no ${packageName} .deb`);
    const target = join(downloadsDir, deb.slice(tmp.length + 1));
    await rename(deb, target);
    return target;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * vmlinuz and the guest modules out of the .deb, into `<downloadsDir>/<packageName>.<modules hash>/` (cached:
 * done once per kernel and module list). Streams the package through tar with member patterns, so the 400 MB module tree never hits the disk.
 */
export async function extractKernel(
  downloadsDir: string,
  packageName: string,
  debPath: string,
  logger: Logger,
): Promise<ExtractedKernel> {
  // Keyed by the module list too: adding a module must not reuse an extraction that lacks it.
  const modulesKey = createHash('sha256').update(GUEST_MODULES.join(',')).digest('hex').slice(0, 8);
  const dir = join(downloadsDir, `${packageName}.${modulesKey}`);
  const vmlinuz = join(dir, 'vmlinuz');
  const modulesDir = join(dir, 'modules');
  if (!(await exists(vmlinuz))) {
    logger.info({ packageName }, 'image: extracting kernel and modules');
    const tmp = join(downloadsDir, `.tmp-extract-${process.pid}-${randomBytes(4).toString('hex')}`);
    const raw = join(tmp, 'raw');
    await mkdir(raw, { recursive: true });
    try {
      const patterns = ['./boot/vmlinuz-*', './lib/modules/*/modules.builtin'];
      for (const name of GUEST_MODULES) patterns.push(`*/${name}.ko`, `*/${name}.ko.xz`, `*/${name}.ko.zst`);
      // tar exits 2 when a pattern matches nothing (a module built in); what was found is checked below.
      await run('sh', [
        '-c',
        'deb="$1"; dest="$2"; shift 2; dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dest" --wildcards "$@"',
        'sh',
        debPath,
        raw,
        ...patterns,
      ]);
      const boot = await readdir(join(raw, 'boot')).catch(() => [] as string[]);
      const kernelFile = boot.find((name) => name.startsWith('vmlinuz-'));
      if (!kernelFile) throw new Internal('image: extract kernel', `no /boot/vmlinuz-* in ${debPath}`);
      const out = join(tmp, 'out');
      await mkdir(join(out, 'modules'), { recursive: true });
      await rename(join(raw, 'boot', kernelFile), join(out, 'vmlinuz'));
      const moduleFiles = await listFiles(join(raw, 'lib'));
      let builtin = '';
      const builtinFile = moduleFiles.find((file) => file.endsWith('/modules.builtin'));
      if (builtinFile) builtin = await readFile(builtinFile, 'utf8');
      for (const name of GUEST_MODULES) {
        const file = moduleFiles.find((f) => new RegExp(`/${name}\\.ko(\\.xz|\\.zst)?$`).test(f));
        const target = join(out, 'modules', `${name}.ko`);
        if (!file) {
          const isBuiltin = new RegExp(`/${name}\\.ko$`, 'm').test(builtin);
          if (REQUIRED_MODULES.has(name) && !isBuiltin) {
            throw new Internal(
              'image: extract kernel',
              `module ${name} is neither in ${debPath} nor built in`,
            );
          }
          continue;
        }
        if (file.endsWith('.xz')) {
          await runChecked('image: decompress module', 'sh', [
            '-c',
            'xz -dc "$1" > "$2"',
            'sh',
            file,
            target,
          ]);
        } else if (file.endsWith('.zst')) {
          await runChecked('image: decompress module', 'sh', [
            '-c',
            'zstd -qdc "$1" > "$2"',
            'sh',
            file,
            target,
          ]);
        } else {
          await rename(file, target);
        }
      }
      await mkdir(dir, { recursive: true });
      await rm(modulesDir, { recursive: true, force: true });
      await rename(join(out, 'modules'), modulesDir).catch(async (error: unknown) => {
        if (!(await exists(modulesDir))) throw error;
      });
      // vmlinuz goes last: its presence is what marks the extraction complete.
      await rename(join(out, 'vmlinuz'), vmlinuz).catch(async (error: unknown) => {
        if (!(await exists(vmlinuz))) throw error;
      });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  const present = new Set(await readdir(modulesDir).catch(() => [] as string[]));
  const depends = new Map<string, string[]>();
  for (const name of GUEST_MODULES) {
    if (!present.has(`${name}.ko`)) continue;
    depends.set(name, moduleDepends(await readFile(join(modulesDir, `${name}.ko`))));
  }
  return { packageName, debPath, vmlinuz, modulesDir, modules: insmodOrder(depends) };
}

/** The `depends=` list from a module's .modinfo section (NUL-separated key=value strings). */
export function moduleDepends(ko: Buffer): string[] {
  const marker = Buffer.from('\0depends=');
  const at = ko.indexOf(marker);
  if (at < 0) return [];
  const start = at + marker.length;
  const end = ko.indexOf(0, start);
  const value = ko.subarray(start, end < 0 ? undefined : end).toString('utf8');
  return value
    .split(',')
    .map((dep) => dep.trim().replace(/-/g, '_'))
    .filter((dep) => dep.length > 0);
}

/**
 * Dependencies first, otherwise in GUEST_MODULES order. A dependency outside the set is assumed built in
 * (insmod then reports it at boot). Throws Internal on a cycle.
 */
export function insmodOrder(depends: ReadonlyMap<string, readonly string[]>): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string): void => {
    if (state.get(name) === 'done' || !depends.has(name)) return;
    if (state.get(name) === 'visiting')
      throw new Internal('image: module order', `dependency cycle at ${name}`);
    state.set(name, 'visiting');
    for (const dep of depends.get(name) ?? []) visit(dep);
    state.set(name, 'done');
    order.push(name);
  };
  for (const name of depends.keys()) visit(name);
  return order;
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
}
