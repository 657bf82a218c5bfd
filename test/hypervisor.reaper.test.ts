// sandboxd-qemu-reaper (src/hypervisor/reaper.c) on its own, with shell programs standing in for QEMU's
// -daemonize (a parent that exits 0 once its daemonized child is set up, stdio let go as QEMU does): the caller sees the first
// process's status, the status file gets the daemonized child's end, and nothing of it outlives that child.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describeExitStatus, waitExitStatus } from '../src/hypervisor/exit-status.js';
import { exists, until } from './support/vm.js';

const run = promisify(execFile);
const REAPER = fileURLToPath(new URL('../bin/sandboxd-qemu-reaper', import.meta.url));

/** Runs the reaper; its exit code (the first process's). */
async function reap(status: string, script: string): Promise<number> {
  try {
    await run(REAPER, [status, 'sh', '-c', script]);
    return 0;
  } catch (err) {
    return (err as { code: number }).code;
  }
}

describe('sandboxd-qemu-reaper', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-reaper-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("returns at once with the first process's 0, then writes the daemonized child's exit status", async () => {
    const status = join(dir, 'exit3');
    const started = Date.now();
    assert.equal(await reap(status, '(sleep 0.4; exit 3) </dev/null >/dev/null 2>&1 & exit 0'), 0);
    assert.ok(Date.now() - started < 350, 'the caller does not wait for the daemonized child');
    assert.equal(await exists(status), false, 'nothing written while the child runs');
    assert.equal(await waitExitStatus(status, 5_000), 'QEMU exited with status 3');
    assert.equal(await readFile(status, 'utf8'), 'exit 3\n');
    assert.equal(await exists(`${status}.tmp`), false);
  });

  it('names the signal that killed the daemonized child', async () => {
    const status = join(dir, 'killed');
    const pidFile = join(dir, 'killed.pid');
    assert.equal(
      await reap(status, `sh -c 'echo $$ > ${pidFile}; exec sleep 30' </dev/null >/dev/null 2>&1 & exit 0`),
      0,
    );
    const pid = Number(
      await until(
        'the child pid',
        5_000,
        async () => (await readFile(pidFile, 'utf8').catch(() => '')).trim() || undefined,
      ),
    );
    process.kill(pid, 'SIGKILL');
    assert.equal(await waitExitStatus(status, 5_000), 'QEMU killed by signal 9 (SIGKILL)');
  });

  it('passes a failing start through and writes nothing', async () => {
    const status = join(dir, 'failed');
    assert.equal(await reap(status, 'echo "bad option" >&2; exit 1'), 1);
    assert.equal(await exists(status), false);
    assert.equal(await reap(status, 'exec /nonexistent/qemu'), 127);
  });

  it('writes nothing when the state dir is gone by the time the child ends', async () => {
    const gone = join(dir, 'gone');
    assert.equal(await reap(join(gone, 'status'), '(sleep 0.3) </dev/null >/dev/null 2>&1 & exit 0'), 0);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(await exists(gone), false);
  });

  it('describes only the lines it writes', () => {
    assert.equal(describeExitStatus('signal 15\n'), 'QEMU killed by signal 15 (SIGTERM)');
    assert.equal(describeExitStatus('exit 0'), 'QEMU exited with status 0');
    assert.equal(describeExitStatus('garbage'), undefined);
  });
});
