// Daemon close() lets go of everything it holds (QMP, agent connections, socket, log) while its sandboxes keep running.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { isProcessAlive } from '../src/hypervisor/index.js';

async function qemuPidsUsing(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.startsWith('qemu-system') && cmdline.includes(dir)) pids.push(Number(entry));
  }
  return pids;
}

describe('daemon close', { timeout: 400_000 }, () => {
  let dir: string | undefined;
  let child: ChildProcess | undefined;

  after(async () => {
    if (child?.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (!dir) return;
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('leaves nothing that keeps the process alive, and the sandbox VM running', async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-close-'));
    child = spawn(
      process.execPath,
      [
        new URL('./fixtures/daemon-close.js', import.meta.url).pathname,
        join(dir, 'state'),
        join(dir, 'sandboxd.sock'),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TMPDIR: dir } },
    );
    const exited = new Promise<number | null>((resolve) => child?.on('exit', (code) => resolve(code)));
    const lines: Record<string, unknown>[] = [];
    let closedAt = 0;
    for await (const line of createInterface({ input: child.stdout! })) {
      lines.push(JSON.parse(line) as Record<string, unknown>);
      if (lines.at(-1)?.closed) {
        closedAt = Date.now();
        break;
      }
    }
    assert.equal(lines.length, 2, 'the sandbox started, then close() returned');
    const pid = lines[0]?.pid as number;
    const timer = setTimeout(() => child?.kill('SIGKILL'), 15_000);
    const code = await exited;
    clearTimeout(timer);
    assert.equal(code, 0, 'ended on its own, with no process.exit and no kill');
    assert.ok(Date.now() - closedAt < 15_000);
    assert.equal(await isProcessAlive(pid), true, 'the VM outlived the daemon');
  });
});
