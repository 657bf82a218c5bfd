// The guest shuts down cleanly on the ACPI power button (QMP system_powerdown), which the hypervisor's graceful stop uses.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { ensureGuestImage } from '../src/image/index.js';
import { type BootedGuest, bootGuest } from './fixtures/image-boot.js';

const BOOT_TIMEOUT_MS = 120_000;

/** Sends QMP commands in order on one connection; resolves with the replies (events skipped). */
function qmp(socket: string, commands: readonly string[]): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(socket);
    const replies: unknown[] = [];
    let buffered = '';
    let sent = 0;
    conn.on('error', reject);
    conn.on('data', (chunk) => {
      buffered += chunk.toString();
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const message = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
        buffered = buffered.slice(nl + 1);
        if ('event' in message) continue;
        if (!('QMP' in message)) replies.push(message);
        if (sent < commands.length) conn.write(`${JSON.stringify({ execute: commands[sent++] })}\n`);
        else {
          conn.end();
          resolve(replies);
        }
      }
    });
  });
}

async function waitForText(file: string, text: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const content = await readFile(file, 'utf8').catch(() => '');
    if (content.includes(text) || Date.now() > deadline) return content;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe('guest power button', { timeout: BOOT_TIMEOUT_MS + 60_000 }, () => {
  let dir: string;
  let guest: BootedGuest | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-image-powerdown-'));
    const image = await ensureGuestImage({ logger: pino({ level: 'warn' }) });
    const share = join(dir, 'share');
    await mkdir(share);
    guest = bootGuest(image, dir, share, 'sandboxd.selftest=wait');
  });

  after(async () => {
    await guest?.kill();
    await rm(dir, { recursive: true, force: true });
  });

  it('stays up after a selftest=wait boot, then powers off on system_powerdown', async () => {
    const ready = await waitForText(guest!.consoleLog, 'waiting for the power button', BOOT_TIMEOUT_MS);
    assert.match(ready, /waiting for the power button/, ready.slice(-3000));
    assert.equal(guest!.child.exitCode, null, 'still running while nobody pressed the button');
    const replies = await qmp(guest!.qmpSocket, ['qmp_capabilities', 'system_powerdown']);
    assert.deepEqual(replies, [{ return: {} }, { return: {} }]);
    const exit = await guest!.waitExit(60_000);
    const consoleText = await readFile(guest!.consoleLog, 'utf8');
    assert.ok(exit, `QEMU still running 60 s after system_powerdown:\n${consoleText.slice(-2000)}`);
    assert.equal(exit.code, 0);
    assert.match(consoleText, /power button; powering off/);
  });
});
