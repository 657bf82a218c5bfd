// Boots the built guest image under plain QEMU (TCG) in selftest mode and reads what the guest reports on its console.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createBusyboxBundle, ensureGuestImage, guestContract } from '../src/image/index.js';
import { type BootedGuest, bootGuest, parseSelftest, type SelftestReport } from './fixtures/image-boot.js';

const BOOT_TIMEOUT_MS = 120_000;
const MEMORY_LIMIT = 64 * 1024 * 1024;

describe('guest image boot (selftest)', { timeout: BOOT_TIMEOUT_MS + 60_000 }, () => {
  let dir: string;
  let guest: BootedGuest | undefined;
  let consoleText = '';
  let exit: Awaited<ReturnType<BootedGuest['waitExit']>>;
  let report: SelftestReport | undefined;
  const field = (key: string): string | undefined => report?.fields.get(key);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-image-boot-'));
    const image = await ensureGuestImage({ logger: pino({ level: 'warn' }) });
    const share = join(dir, 'share');
    await mkdir(share);
    await createBusyboxBundle(join(share, guestContract.selftest.bundleDir), {
      args: [
        'sh',
        '-c',
        'echo "container says $((6 * 7)) as $(id -u) on $(hostname)"; echo "memory.max=$(cat /sys/fs/cgroup/memory.max)"; echo "pid=$$"',
      ],
      memoryLimitBytes: MEMORY_LIMIT,
      cgroupsPath: `${guestContract.containerCgroupParent}/selftest`,
      hostname: 'selftest-container',
    });
    guest = bootGuest(image, dir, share, 'sandboxd.selftest=1 sandboxd.hostname=imagetest');
    exit = await guest.waitExit(BOOT_TIMEOUT_MS);
    consoleText = await readFile(guest.consoleLog, 'utf8').catch(() => '');
    report = parseSelftest(consoleText);
  });

  after(async () => {
    await guest?.kill();
    await rm(dir, { recursive: true, force: true });
  });

  it('powers the VM off by itself after the selftest', () => {
    assert.ok(exit, `QEMU did not exit within ${BOOT_TIMEOUT_MS} ms:\n${consoleText.slice(-3000)}`);
    assert.equal(exit.code, 0, consoleText.slice(-3000));
    assert.ok(report, `no selftest block on the console:\n${consoleText.slice(-3000)}`);
    assert.match(consoleText, /selftest done; powering off/);
  });

  it('mounts cgroup2 with cpu, memory, pids and io delegated', () => {
    const controllers = (field('cgroup.controllers') ?? '').split(' ');
    const delegated = (field('cgroup.subtree_control') ?? '').split(' ');
    for (const controller of ['cpu', 'memory', 'pids', 'io']) {
      assert.ok(controllers.includes(controller), `${controller} available: ${controllers.join(' ')}`);
      assert.ok(delegated.includes(controller), `${controller} delegated: ${delegated.join(' ')}`);
    }
  });

  it('sets the hostname from the kernel command line and finds the agent port and the share', () => {
    assert.equal(field('hostname'), 'imagetest');
    assert.match(field('agent.port') ?? '', /^\/dev\/vport\d+p\d+$/);
    assert.equal(field('shared'), '1');
  });

  it('runs crun from the guest root and a busybox container from the share', () => {
    const output = report?.containerOutput ?? [];
    assert.match(field('crun.version') ?? '', /^crun version 1\.\d+/);
    assert.equal(field('container.exit'), '0', output.join('\n'));
    assert.ok(
      output.includes('container says 42 as 0 on selftest-container'),
      `container output: ${JSON.stringify(output)}`,
    );
    assert.ok(output.includes(`memory.max=${MEMORY_LIMIT}`), JSON.stringify(output));
    assert.ok(output.includes('pid=1'), 'the container has its own pid namespace');
  });

  it('runs node from the guest root', () => {
    assert.equal(field('node.version'), process.version);
  });
});
