// One daemon per state dir: a second process opening the same event log gets StateDirInUse.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { StateDirInUse } from '../src/errors/index.js';
import { openLevelEventStore } from '../src/store/index.js';
import { testRegistry } from './fixtures/store-registry.js';

const run = promisify(execFile);
const opener = new URL('./fixtures/store-opener.js', import.meta.url);
const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function openInChild(
  dir: string,
): Promise<{ opened: boolean; typed?: boolean; kind?: string; message?: string }> {
  const { stdout } = await run(process.execPath, [opener.pathname, dir], { timeout: 30_000 });
  return JSON.parse(stdout.trim());
}

describe('the state dir lock', () => {
  it('refuses a second sandboxd on the same state dir with StateDirInUse, and admits it once the first closes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sandboxd-store-lock-'));
    dirs.push(dir);
    const first = await openLevelEventStore(dir, { registry: testRegistry() });
    try {
      await first.append('s', 0, [{ type: 'Noted', data: { n: 1 } }]);
      const second = await openInChild(dir);
      assert.deepEqual(second, {
        opened: false,
        typed: true,
        kind: 'StateDirInUse',
        code: 'UNAVAILABLE',
        message: `state dir ${dir} is in use by another sandboxd`,
      });
      // The same holds inside one process; a daemon keeping its log in a subdirectory names its state dir.
      await assert.rejects(
        openLevelEventStore(dir, { registry: testRegistry(), stateDir: '/var/lib/sandboxd' }),
        {
          name: 'StateDirInUse',
          message: 'state dir /var/lib/sandboxd is in use by another sandboxd',
        },
      );
      await assert.rejects(openLevelEventStore(dir, { registry: testRegistry() }), StateDirInUse);
      assert.equal(first.lastSeq(), 1, 'the holder is unaffected');
    } finally {
      await first.close();
    }
    assert.deepEqual(await openInChild(dir), { opened: true });
  });
});
