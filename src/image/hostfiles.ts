// Which host files make up the guest root: node, crun, busybox-static, and every shared library `ldd` names for them.
import { open, realpath } from 'node:fs/promises';
import { basename, dirname, posix } from 'node:path';
import { Internal } from '../errors/index.js';
import { runChecked } from './exec.js';

/** One file copied from the host into the guest root dir. `target` is relative to the root dir ("usr/bin/node"). */
export interface HostFile {
  /** The path as the host names it (kept for messages and mtime checks). */
  readonly source: string;
  /** The file whose bytes are copied (symlinks resolved). */
  readonly real: string;
  readonly target: string;
  readonly mode: number;
}

/** Binaries the guest needs, by their guest path. Overridable for tests by env (SANDBOXD_NODE_BIN, …). */
export function guestBinaries(): { node: string; crun: string; busybox: string } {
  return {
    node: process.env.SANDBOXD_NODE_BIN ?? '/usr/bin/node',
    crun: process.env.SANDBOXD_CRUN_BIN ?? '/usr/bin/crun',
    busybox: busyboxPath(),
  };
}

/** The host's static busybox (Debian's busybox-static), used for the initrd, the guest root and test bundles. */
export function busyboxPath(): string {
  return process.env.SANDBOXD_BUSYBOX ?? '/bin/busybox';
}

/** True when the ELF file has no program interpreter (PT_INTERP), i.e. it runs without ld-linux and libs. */
export async function isStaticElf(path: string): Promise<boolean> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(64);
    await handle.read(head, 0, 64, 0);
    if (head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2) return false; // not a 64-bit ELF
    const phoff = Number(head.readBigUInt64LE(32));
    const phentsize = head.readUInt16LE(54);
    const phnum = head.readUInt16LE(56);
    const table = Buffer.alloc(phentsize * phnum);
    await handle.read(table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) {
      if (table.readUInt32LE(i * phentsize) === 3) return false; // PT_INTERP
    }
    return true;
  } finally {
    await handle.close();
  }
}

/** Absolute paths of the libraries `ldd` lists for a binary, the dynamic loader included. */
export async function lddLibraries(binary: string): Promise<string[]> {
  const out = await runChecked(`image: ldd ${binary}`, 'ldd', [binary]);
  const libs: string[] = [];
  for (const line of out.split('\n')) {
    const arrow = /=>\s+(\/\S+)\s+\(0x/.exec(line);
    const direct = /^\s*(\/\S+)\s+\(0x/.exec(line);
    const path = arrow?.[1] ?? direct?.[1];
    if (path) libs.push(path);
    else if (/not found/.test(line))
      throw new Internal(`image: ldd ${binary}`, `missing library: ${line.trim()}`);
  }
  return libs;
}

/** Where a host path lives in the guest root: everything under usr/ (the guest has /lib -> usr/lib etc.). */
export function guestTargetOf(hostPath: string): string {
  const normal = posix.normalize(hostPath);
  return normal.startsWith('/usr/') ? normal.slice(1) : `usr${normal}`;
}

/** Every host file of the guest root (binaries and their libraries), deduplicated by target. */
export async function collectHostFiles(): Promise<HostFile[]> {
  const bins = guestBinaries();
  if (!(await isStaticElf(bins.busybox).catch(() => false))) {
    throw new Internal('image: busybox', `${bins.busybox} is not a static busybox (install busybox-static)`);
  }
  const files = new Map<string, HostFile>();
  const add = async (source: string, target: string, mode: number): Promise<void> => {
    if (files.has(target)) return;
    const real = await realpath(source).catch((error: unknown) => {
      throw new Internal('image: host files', `${source} is missing`, { source }, error);
    });
    files.set(target, { source, real, target, mode });
  };
  await add(bins.node, 'usr/bin/node', 0o755);
  await add(bins.crun, 'usr/bin/crun', 0o755);
  await add(bins.busybox, 'usr/bin/busybox', 0o755);
  for (const binary of [bins.node, bins.crun]) {
    for (const lib of await lddLibraries(binary)) {
      await add(lib, guestTargetOf(lib), 0o755);
    }
  }
  return [...files.values()];
}

/** Applet links for the guest root (`usr/bin/sh` → busybox, …), from the binary's own list; never shadows node or crun. */
export async function busyboxApplets(busybox: string): Promise<Array<{ target: string; link: string }>> {
  const out = await runChecked('image: busybox --list-full', busybox, ['--list-full']);
  const links: Array<{ target: string; link: string }> = [];
  const seen = new Set<string>(['usr/bin/node', 'usr/bin/crun', 'usr/bin/busybox']);
  for (const line of out.split('\n')) {
    const applet = line.trim();
    if (!applet) continue;
    const name = basename(applet);
    const sbin = dirname(applet).endsWith('sbin');
    const target = sbin ? `usr/sbin/${name}` : `usr/bin/${name}`;
    if (seen.has(target)) continue;
    seen.add(target);
    links.push({ target, link: sbin ? '../bin/busybox' : 'busybox' });
  }
  return links;
}
