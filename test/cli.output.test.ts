// sandboxctl's output arrives whole through a pipe to a slow reader, not only to a file (issue 12 item 3).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openLevelEventStore } from '../src/store/index.js';

const CLI = join(import.meta.dirname, '..', 'src', 'cli', 'main.js');

/** Runs sandboxctl with `args`; reads its stdout slowly (a pause before the first read) and counts the bytes. */
function slowlyRead(args: string[], pauseMs: number): Promise<{ bytes: number; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let bytes = 0;
    child.stdout.pause();
    setTimeout(() => child.stdout.resume(), pauseMs);
    child.stdout.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ bytes, code }));
  });
}

describe('sandboxctl output to a pipe', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-cli-out-'));
    const store = await openLevelEventStore(join(dir, 'events'));
    for (let i = 0; i < 600; i++) {
      await store.append(`sandbox-s${i}`, 0, [
        {
          type: 'SandboxCreated',
          data: { sandboxId: `s${i}`, config: { labels: { pad: 'x'.repeat(100) } } },
        },
      ]);
    }
    await store.close();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const args of [
    ['events', 'ls'],
    ['events', 'ls', '--json'],
    ['events', 'export'],
  ]) {
    it(`writes \`${args.join(' ')}\` of more than 64 KiB whole to a reader that starts late`, async () => {
      const fast = await slowlyRead(['--state-dir', dir, ...args], 0);
      assert.equal(fast.code, 0);
      assert.ok(fast.bytes > 128 * 1024, `big enough to fill a pipe (${fast.bytes} bytes)`);
      const slow = await slowlyRead(['--state-dir', dir, ...args], 1500);
      assert.equal(slow.code, 0);
      assert.equal(slow.bytes, fast.bytes, 'nothing cut off');
    });
  }
});
