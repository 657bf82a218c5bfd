// Boots the built guest image under plain QEMU (TCG) in selftest mode and reads what the guest reports on its console.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createBusyboxBundle, ensureGuestImage, guestContract } from '../src/image/index.js';

const BOOT_TIMEOUT_MS = 120_000;

describe('guest image boot (selftest)', { timeout: BOOT_TIMEOUT_MS + 60_000 }, () => {
  let dir: string;
  let qemu: ChildProcess | undefined;
  let consoleText = '';
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let selftest = new Map<string, string>();
  let containerOutput: string[] = [];

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
      memoryLimitBytes: 64 * 1024 * 1024,
      cgroupsPath: `${guestContract.containerCgroupParent}/selftest`,
      hostname: 'selftest-container',
    });
    const consoleLog = join(dir, 'console.log');
    qemu = spawn(
      'qemu-system-x86_64',
      [
        ...['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot'],
        ...['-accel', 'tcg', '-cpu', 'max', '-m', '512', '-smp', '2'],
        ...['-kernel', image.kernel, '-initrd', image.initrd],
        ...['-append', `console=ttyS0 quiet panic=-1 sandboxd.selftest=1 sandboxd.hostname=imagetest`],
        ...['-serial', `file:${consoleLog}`],
        ...['-fsdev', `local,id=fs0,path=${image.rootDir},security_model=none,readonly=on`],
        ...['-device', `virtio-9p-pci,fsdev=fs0,mount_tag=${guestContract.rootShareTag}`],
        ...['-fsdev', `local,id=fs1,path=${share},security_model=none`],
        ...['-device', `virtio-9p-pci,fsdev=fs1,mount_tag=${guestContract.sharedShareTag}`],
        ...['-device', 'virtio-serial-pci'],
        ...['-chardev', `socket,id=ch0,path=${join(dir, 'agent.sock')},server=on,wait=off`],
        ...['-device', `virtserialport,chardev=ch0,name=${guestContract.agentPortName}`],
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    qemu.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    exit = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), BOOT_TIMEOUT_MS);
      qemu!.on('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal });
      });
    });
    consoleText = await readFile(consoleLog, 'utf8').catch(() => '');
    if (!exit) consoleText += `\n[test: QEMU still running after ${BOOT_TIMEOUT_MS} ms]\n${stderr}`;
    const begin = consoleText.indexOf(guestContract.selftest.begin);
    const end = consoleText.indexOf(guestContract.selftest.end);
    if (begin >= 0 && end > begin) {
      const body = consoleText.slice(begin + guestContract.selftest.begin.length, end).replace(/\r/g, '');
      const lines = body.split('\n');
      const outBegin = lines.indexOf('container.output.begin');
      const outEnd = lines.indexOf('container.output.end');
      containerOutput = outBegin >= 0 && outEnd > outBegin ? lines.slice(outBegin + 1, outEnd) : [];
      selftest = new Map(
        lines
          .map((line) => /^([\w.]+): (.*)$/.exec(line))
          .filter((match): match is RegExpExecArray => match !== null)
          .map((match) => [match[1]!, match[2]!]),
      );
    }
  });

  after(async () => {
    if (qemu && qemu.exitCode === null && qemu.signalCode === null) {
      qemu.kill('SIGKILL');
      await new Promise((resolve) => qemu!.once('exit', resolve));
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('powers the VM off by itself after the selftest', () => {
    assert.ok(exit, `QEMU did not exit within ${BOOT_TIMEOUT_MS} ms:\n${consoleText.slice(-3000)}`);
    assert.equal(exit.code, 0, consoleText.slice(-3000));
    assert.ok(selftest.size > 0, `no selftest block on the console:\n${consoleText.slice(-3000)}`);
    assert.match(consoleText, /selftest done; powering off/);
  });

  it('mounts cgroup2 with cpu, memory, pids and io delegated', () => {
    const controllers = (selftest.get('cgroup.controllers') ?? '').split(' ');
    const delegated = (selftest.get('cgroup.subtree_control') ?? '').split(' ');
    for (const controller of ['cpu', 'memory', 'pids', 'io']) {
      assert.ok(controllers.includes(controller), `${controller} available: ${controllers.join(' ')}`);
      assert.ok(delegated.includes(controller), `${controller} delegated: ${delegated.join(' ')}`);
    }
  });

  it('sets the hostname from the kernel command line and finds the agent port and the share', () => {
    assert.equal(selftest.get('hostname'), 'imagetest');
    assert.match(selftest.get('agent.port') ?? '', /^\/dev\/vport\d+p\d+$/);
    assert.equal(selftest.get('shared'), '1');
  });

  it('runs crun from the guest root and a busybox container from the share', () => {
    assert.match(selftest.get('crun.version') ?? '', /^crun version 1\.\d+/);
    assert.equal(selftest.get('container.exit'), '0', containerOutput.join('\n'));
    assert.ok(
      containerOutput.includes('container says 42 as 0 on selftest-container'),
      `container output: ${JSON.stringify(containerOutput)}`,
    );
    assert.ok(containerOutput.includes(`memory.max=${64 * 1024 * 1024}`), JSON.stringify(containerOutput));
    assert.ok(containerOutput.includes('pid=1'), 'the container has its own pid namespace');
  });

  it('runs node from the guest root', () => {
    assert.equal(selftest.get('node.version'), process.version);
  });
});
