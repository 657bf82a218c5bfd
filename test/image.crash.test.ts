// A build killed with SIGKILL half-way leaves no half image in place, and the next call builds a whole one.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { ensureGuestImage } from '../src/image/index.js';
import { seedImageCache } from './fixtures/image-cache.js';

const VERSION_DIR = /^[0-9a-f]{16}$/;
const BUILD_TMP_DIR = /^\.tmp-[0-9a-f]{16}-\d+-[0-9a-f]+$/;

describe('guest image build crash', { timeout: 180_000 }, () => {
  let cacheDir: string;
  let snapshot: string;

  before(async () => {
    cacheDir = await mkdtemp(join(tmpdir(), 'sandboxd-image-crash-'));
    snapshot = join(cacheDir, 'snapshot');
    await seedImageCache(cacheDir, snapshot);
  });

  after(async () => {
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('leaves only a temp dir when killed mid-build, which the next build removes', async () => {
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL('./fixtures/image-build-child.js', import.meta.url)), cacheDir, snapshot],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let childExited = false;
    void exited.then(() => {
      childExited = true;
    });
    // Kill it as soon as it starts writing an image version (kernel extraction and bundling come before).
    let tmpDir: string | undefined;
    while (!tmpDir && !childExited) {
      tmpDir = (await readdir(cacheDir)).find((name) => BUILD_TMP_DIR.test(name));
      if (!tmpDir) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(tmpDir, 'the child finished before the test saw its build dir');
    child.kill('SIGKILL');
    await exited;

    const afterCrash = await readdir(cacheDir);
    assert.deepEqual(
      afterCrash.filter((name) => VERSION_DIR.test(name)),
      [],
      'no version dir: the image only appears by rename when complete',
    );
    assert.ok(!afterCrash.includes('state.json'), 'no state points at an image that does not exist');

    const image = await ensureGuestImage({
      cacheDir,
      projectDir: snapshot,
      logger: pino({ level: 'silent' }),
    });
    for (const file of [image.kernel, image.initrd, join(image.rootDir, 'usr/bin/node')]) {
      assert.ok((await stat(file)).size > 0, file);
    }
    const names = await readdir(cacheDir);
    assert.deepEqual(
      names.filter((name) => name.startsWith('.tmp-')),
      [],
      'the crashed build dir is gone',
    );
    assert.deepEqual(
      names.filter((name) => VERSION_DIR.test(name)),
      [image.version],
    );
  });
});
