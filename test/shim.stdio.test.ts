// The shim's fifo writer against a real fifo: containerd's fifo package opens its read side only after the
// call that hands the path over, so a writer that gave up on ENXIO lost the exec (CI saw it as a hung ctr).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openFifo } from '../src/shim/index.js';

describe('the shim opening a fifo for writing', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shim-stdio-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('waits for a reader that opens after it, and the reader gets every byte', async () => {
    const path = join(dir, 'late');
    execFileSync('mkfifo', [path]);
    const opening = openFifo(path, true);
    await new Promise((r) => setTimeout(r, 150));
    const chunks: Buffer[] = [];
    const reader = createReadStream(path);
    reader.on('data', (c) => chunks.push(c as Buffer));
    const ended = new Promise<void>((r) => reader.on('end', () => r()));
    const writer = await opening;
    writer.end('hello through a late reader\n');
    await ended;
    assert.equal(Buffer.concat(chunks).toString(), 'hello through a late reader\n');
  });

  it('fails naming the fifo when no reader comes within the wait', async () => {
    const path = join(dir, 'never');
    execFileSync('mkfifo', [path]);
    await assert.rejects(openFifo(path, true, 200), (err: Error) => err.message.includes(path));
  });

  it('fails at once on a path that is not there', async () => {
    await assert.rejects(openFifo(join(dir, 'absent'), true), /ENOENT/);
  });
});
