// The guest image builder: a real build into a temp cache, the fast no-change path, the initrd and guest root contents.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import pino from 'pino';
import { Internal } from '../src/errors/index.js';
import type { GuestImagePaths } from '../src/hypervisor/index.js';
import {
  CONSOLE_HELPER_TARGET,
  compileConsoleHelper,
  ensureGuestImage,
  GUEST_MODULES,
  imagePaths,
  makeRootImage,
} from '../src/image/index.js';
import { projectDir, seedImageCache } from './fixtures/image-cache.js';

const logger = pino({ level: 'silent' });

/** Member names of a newc archive, read by hand so the test does not trust the writer's own reader. */
function cpioNames(archive: Buffer): Map<string, { mode: number; size: number }> {
  const names = new Map<string, { mode: number; size: number }>();
  let offset = 0;
  const align = (n: number): number => (n + 3) & ~3;
  for (;;) {
    const magic = archive.toString('ascii', offset, offset + 6);
    assert.equal(magic, '070701', `newc magic at ${offset}`);
    const field = (i: number): number =>
      Number.parseInt(archive.toString('ascii', offset + 6 + i * 8, offset + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const name = archive.toString('utf8', offset + 110, offset + 110 + nameSize - 1);
    if (name === 'TRAILER!!!') return names;
    names.set(name, { mode, size });
    offset = align(align(offset + 110 + nameSize) + size);
  }
}

function lddPaths(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' });
  return [...out.matchAll(/(?:=>\s+)?(\/\S+)\s+\(0x/g)].map((match) => match[1]!);
}

describe('guest image build', () => {
  let cacheDir: string;
  let first: GuestImagePaths;
  let firstMs: number;
  let snapshot: string;

  before(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'sandboxd-image-test-'));
    snapshot = join(cacheDir, 'snapshot');
    await seedImageCache(cacheDir, snapshot);
    const started = performance.now();
    first = await ensureGuestImage({ cacheDir, logger, projectDir: snapshot });
    firstMs = performance.now() - started;
  });

  after(async () => {
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('builds an image whose paths live under <cacheDir>/<version>/', async () => {
    assert.match(first.version, /^[0-9a-f]{16}$/);
    assert.deepEqual(first, imagePaths(cacheDir, first.version));
    for (const file of [first.kernel, first.initrd]) assert.ok((await stat(file)).size > 1_000_000, file);
    assert.ok((await stat(first.rootDir)).isDirectory());
  });

  it('returns the same version in well under a second when nothing changed', async () => {
    const started = performance.now();
    const second = await ensureGuestImage({ cacheDir, logger, projectDir: snapshot });
    const ms = performance.now() - started;
    assert.deepEqual(second, first);
    assert.ok(ms < 1000, `second call took ${ms.toFixed(0)} ms (first: ${firstMs.toFixed(0)} ms)`);
  });

  it('leaves no temporary build directories behind', async () => {
    const names = await readdir(cacheDir);
    assert.deepEqual(
      names.filter((name) => name.startsWith('.tmp-')),
      [],
    );
    assert.deepEqual(
      names.filter((name) => /^[0-9a-f]{16}$/.test(name)),
      [first.version],
    );
  });

  it('packs the init, busybox, a console node and every guest module into the initrd', async () => {
    const members = cpioNames(gunzipSync(await readFile(first.initrd)));
    assert.ok(members.has('init'), 'init');
    assert.equal((members.get('init')!.mode & 0o111) !== 0, true, 'init is executable');
    assert.ok(members.has('bin/busybox'));
    assert.ok(members.has('bin/sh') && members.has('sbin/switch_root') && members.has('sbin/insmod'));
    assert.equal(members.get('dev/console')!.mode & 0o170000, 0o020000, '/dev/console is a char device');
    for (const name of GUEST_MODULES.slice(0, 15)) assert.ok(members.has(`lib/modules/${name}.ko`), name);
    const initText = gunzipSync(await readFile(first.initrd)).includes(Buffer.from('GUEST CONTRACT'));
    assert.ok(initText, 'the init carries the guest contract');
  });

  it('packs the guest root into an erofs image that fsck.erofs accepts, byte for byte reproducible', async () => {
    const image = first.rootImage!;
    const head = await readFile(image);
    // erofs superblock at 1024: magic 0xE0F5E1E2 (little endian).
    assert.equal(head.readUInt32LE(1024), 0xe0f5e1e2, 'erofs magic');
    const out = join(cacheDir, 'extract');
    execFileSync('fsck.erofs', [`--extract=${out}`, image]);
    assert.deepEqual(
      await readFile(join(out, 'usr/bin/node')),
      await readFile(join(first.rootDir, 'usr/bin/node')),
    );
    const manifest = JSON.parse(await readFile(join(out, 'opt/sandboxd/image.json'), 'utf8'));
    assert.equal(manifest.version, first.version);
    await rm(out, { recursive: true, force: true });
    // No random UUID or build time inside: the same root gives the same bytes.
    const again = join(cacheDir, 'again.erofs');
    await makeRootImage(first.rootDir, again, first.version);
    assert.ok((await readFile(again)).equals(head), 'a second pack of the same root is identical');
    await rm(again, { force: true });
  });

  it('puts node, crun, busybox and each of their ldd libraries into the guest root', async () => {
    for (const binary of ['usr/bin/node', 'usr/bin/crun', 'usr/bin/busybox']) {
      const info = await stat(join(first.rootDir, binary));
      assert.ok(info.isFile() && (info.mode & 0o111) !== 0, binary);
    }
    for (const binary of ['/usr/bin/node', '/usr/bin/crun']) {
      for (const lib of lddPaths(binary)) {
        const target = lib.startsWith('/usr/') ? lib.slice(1) : `usr${lib}`;
        const info = await stat(join(first.rootDir, target));
        assert.ok(info.size > 0, `${binary} needs ${lib}: ${target} in the guest root`);
      }
    }
    const sh = await stat(join(first.rootDir, 'usr/bin/sh'));
    assert.ok(sh.isFile(), 'sh resolves to busybox');
    const manifest = JSON.parse(await readFile(join(first.rootDir, 'opt/sandboxd/image.json'), 'utf8'));
    assert.equal(manifest.version, first.version);
  });

  it('compiles the terminal helper static into the guest root', async () => {
    const helper = join(first.rootDir, CONSOLE_HELPER_TARGET);
    const info = await stat(helper);
    assert.ok(info.isFile() && (info.mode & 0o111) !== 0, 'executable');
    // A static binary has no program interpreter: the guest needs no libc for it.
    const header = execFileSync('readelf', ['-l', helper], { encoding: 'utf8' });
    assert.doesNotMatch(header, /INTERP/);
    const manifest = JSON.parse(await readFile(join(first.rootDir, 'opt/sandboxd/image.json'), 'utf8'));
    assert.equal(manifest.console, true);
  });

  it('says to install gcc when it cannot compile the terminal helper', async () => {
    const emptyPath = join(cacheDir, 'no-tools');
    await mkdir(emptyPath, { recursive: true });
    const savedPath = process.env.PATH;
    process.env.PATH = emptyPath;
    try {
      await assert.rejects(compileConsoleHelper(snapshot), (error: unknown) => {
        assert.ok(error instanceof Internal);
        assert.match(error.message, /gcc is not installed.*libc6-dev/);
        return true;
      });
    } finally {
      process.env.PATH = savedPath;
    }
  });

  it('orders the modules so that each loads after what it depends on', async () => {
    const manifest = JSON.parse(await readFile(join(first.rootDir, 'opt/sandboxd/image.json'), 'utf8'));
    const order = manifest.modules as string[];
    const before = (a: string, b: string): void =>
      assert.ok(order.indexOf(a) >= 0 && order.indexOf(a) < order.indexOf(b), `${a} before ${b}: ${order}`);
    before('virtio_ring', 'virtio');
    before('virtio', 'virtio_pci');
    before('virtio_pci_modern_dev', 'virtio_pci');
    before('netfs', 'fscache');
    before('9pnet', '9pnet_virtio');
    before('fscache', '9p');
    const members = cpioNames(gunzipSync(await readFile(first.initrd)));
    assert.ok(members.has('etc/sandboxd/modules'));
  });

  it('rebuilds under a new version when the agent appears, with the bundle and proto in /opt/sandboxd', async () => {
    const project = join(cacheDir, 'project');
    await mkdir(join(project, 'src', 'image'), { recursive: true });
    await mkdir(join(project, 'src', 'guest'), { recursive: true });
    await mkdir(join(project, 'proto'), { recursive: true });
    await copyFile(join(projectDir, 'src/image/guest-init.sh'), join(project, 'src/image/guest-init.sh'));
    const withoutAgent = await ensureGuestImage({ cacheDir, logger, projectDir: project });
    await assert.rejects(stat(join(withoutAgent.rootDir, 'opt/sandboxd/agent.mjs')), { code: 'ENOENT' });

    await writeFile(
      join(project, 'src/guest/main.ts'),
      "import { helper } from './helper.js';\nprocess.stdout.write(helper(typeof require));\n",
    );
    await writeFile(
      join(project, 'src/guest/helper.ts'),
      'export const helper = (kind: string): string => kind;\n',
    );
    await writeFile(join(project, 'proto/agent.proto'), 'syntax = "proto3";\npackage test;\n');
    const withAgent = await ensureGuestImage({ cacheDir, logger, projectDir: project });
    assert.notEqual(withAgent.version, withoutAgent.version);
    const agentFile = join(withAgent.rootDir, 'opt/sandboxd/agent.mjs');
    const out = execFileSync(process.execPath, [agentFile], { encoding: 'utf8' });
    assert.equal(out, 'function', 'the ESM bundle defines require for CommonJS dependencies');
    assert.match(await readFile(join(withAgent.rootDir, 'opt/sandboxd/agent.proto'), 'utf8'), /package test/);

    // A change to a file the bundle imported is noticed by the fast path's stat check.
    await new Promise((resolve) => setTimeout(resolve, 20));
    await writeFile(
      join(project, 'src/guest/helper.ts'),
      'export const helper = (kind: string): string => kind + "!";\n',
    );
    const changed = await ensureGuestImage({ cacheDir, logger, projectDir: project });
    assert.notEqual(changed.version, withAgent.version);
    assert.equal(
      execFileSync(process.execPath, [join(changed.rootDir, 'opt/sandboxd/agent.mjs')], { encoding: 'utf8' }),
      'function!',
    );
  });

  it('prunes versions unused for long beyond the newest two, and orphan blobs, when it builds', async () => {
    const longAgo = new Date(Date.now() - 3 * 60 * 60 * 1000);
    const stale = ['00000000000000a1', '00000000000000a2'];
    for (const name of stale) {
      await mkdir(join(cacheDir, name, 'root'), { recursive: true });
      await utimes(join(cacheDir, name), longAgo, longAgo);
    }
    const orphan = join(cacheDir, 'blobs', 'f'.repeat(64));
    await writeFile(orphan, 'nobody links me');
    await utimes(orphan, longAgo, longAgo);
    // A touched input (same content) sends the next call down the build path, which prunes.
    await utimes(join(snapshot, 'src/image/guest-init.sh'), new Date(), new Date());
    const again = await ensureGuestImage({ cacheDir, logger, projectDir: snapshot });
    assert.equal(again.version, first.version, 'same content, same version');
    const names = await readdir(cacheDir);
    for (const name of stale) assert.ok(!names.includes(name), `${name} pruned`);
    assert.ok(names.includes(first.version));
    await assert.rejects(stat(orphan), { code: 'ENOENT' });
    assert.ok((await stat(join(first.rootDir, 'usr/bin/node'))).isFile(), 'linked blobs stay');
  });
});
