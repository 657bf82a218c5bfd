// The real guest agent in a real VM (TCG here), driven through GrpcAgent: containers under crun, exec, stdio, signals,
// stats, limits, pause, OOM, copy, reconnect, destroy → the VM powers off and nothing is left on the host.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { filter, firstValueFrom, lastValueFrom, type Observable, reduce, timeout } from 'rxjs';
import { type AgentEvent, createGrpcAgent, type GrpcAgent } from '../src/agent/index.js';
import { InvalidArgument, InvalidState, NotFound } from '../src/errors/index.js';
import {
  createQemuHypervisor,
  isProcessAlive,
  type QemuHypervisor,
  type VmConfig,
  type VmHandle,
} from '../src/hypervisor/index.js';
import { createBusyboxBundle, ensureGuestImage, guestContract } from '../src/image/index.js';
import { qemuPidsUsing, until } from './support/vm.js';

const logger = pino({ level: process.env.SANDBOXD_TEST_LOG ?? 'silent' });
const SB = 'agentvm';
const MiB = 1024 * 1024;

async function textOf(output: Observable<Uint8Array>): Promise<string> {
  const bytes = await lastValueFrom(
    output.pipe(
      reduce((all, chunk) => Buffer.concat([all, chunk]), Buffer.alloc(0)),
      timeout(60_000),
    ),
  );
  return bytes.toString('utf8');
}

/** Output so far, until `predicate` holds (the stream of a running process does not complete). */
async function outputUntil(
  output: Observable<Uint8Array>,
  predicate: (text: string) => boolean,
): Promise<string> {
  let text = '';
  await firstValueFrom(
    output.pipe(
      filter((chunk) => {
        text += Buffer.from(chunk).toString('utf8');
        return predicate(text);
      }),
      timeout(60_000),
    ),
  );
  return text;
}

describe('guest agent in a real VM', { timeout: 600_000 }, () => {
  let work: string;
  let config: VmConfig;
  let handle: VmHandle;
  let hypervisor: QemuHypervisor;
  let agent: GrpcAgent;
  const events: AgentEvent[] = [];

  const bundle = async (name: string, args: string[]) => {
    await createBusyboxBundle(join(config.sharedDir, name), { args });
    return name;
  };
  const eventMatching = (predicate: (event: AgentEvent) => boolean) =>
    firstValueFrom(agent.events(SB).pipe(filter(predicate), timeout(60_000)));

  before(async () => {
    const image = await ensureGuestImage({ logger });
    work = await mkdtemp(join(tmpdir(), 'sbx-agentvm-'));
    const sharedDir = join(work, 'shared');
    await mkdir(sharedDir);
    config = {
      sandboxId: SB,
      stateDir: join(work, 'state'),
      sharedDir,
      image,
      vcpus: 1,
      maxVcpus: 2,
      memoryMiB: 512,
      maxMemoryMiB: 1024,
    };
    hypervisor = createQemuHypervisor({ logger });
    handle = await hypervisor.launch(config);
    agent = createGrpcAgent({ logger, callDeadlineMs: 60_000 });
    agent.events(SB).subscribe((event) => events.push(event));
    await agent.connect(SB, handle.agentSocket, { deadlineMs: 120_000 });
  });

  after(async () => {
    await agent?.close();
    if (hypervisor) {
      await hypervisor.destroy(SB, config.stateDir).catch(() => {});
      await hypervisor.close();
    }
    for (const pid of work ? await qemuPidsUsing(work) : []) process.kill(pid, 'SIGKILL');
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('answers Check and reports the guest kernel, CPUs and memory', async () => {
    const { version } = await agent.check(SB);
    const details = await agent.getGuestDetails(SB);
    assert.equal(details.agentVersion, version);
    assert.match(details.kernel, /^6\./);
    assert.equal(details.cpus, 1);
    assert.ok(details.memTotalBytes > 256 * MiB && details.memTotalBytes <= 512 * MiB);
    assert.ok(details.memBlockSizeBytes > 0);
  });

  it('onlines hot-plugged CPUs and memory, sets the clock, reseeds, lists network and metrics', async () => {
    await hypervisor.hotplugCpus(SB, 2);
    await hypervisor.hotplugMemory(SB, 128);
    const before = await agent.getGuestDetails(SB);
    await until('hotplugged CPU visible in the guest', 30_000, async () => {
      await agent.onlineCpuMem(SB, { cpus: 2, memory: true });
      const details = await agent.getGuestDetails(SB);
      return details.cpus === 2 && details.memTotalBytes > before.memTotalBytes ? details : undefined;
    });
    await agent.setGuestDateTime(SB, new Date());
    await agent.reseedRandomDev(SB, Buffer.from('some entropy from the host'));
    const lo = (await agent.listInterfaces(SB)).find((iface) => iface.name === 'lo');
    assert.ok(lo?.up);
    assert.ok(lo?.addresses.includes('127.0.0.1/8'), JSON.stringify(lo));
    assert.ok(Array.isArray(await agent.listRoutes(SB)));
    assert.match(await agent.getMetrics(SB), /sandboxd_guest_meminfo_bytes\{field="MemTotal"\} \d+/);
  });

  it('sets up the sandbox hostname, seen by a container that shares the guest UTS namespace', async () => {
    await agent.createSandbox(SB, { hostname: 'agentvm-host', dns: ['10.0.2.3'], sandboxPidNs: true });
    const name = await bundle('hn', ['hostname']);
    const configPath = join(config.sharedDir, name, 'config.json');
    const spec = JSON.parse(await readFile(configPath, 'utf8'));
    spec.linux.namespaces = spec.linux.namespaces.filter((ns: { type: string }) => ns.type !== 'uts');
    delete spec.hostname;
    await writeFile(configPath, JSON.stringify(spec));
    await agent.createContainer(SB, { containerId: 'hn', bundle: name });
    await agent.startContainer(SB, 'hn');
    assert.equal(await textOf(agent.readStdout(SB, 'hn', '')), 'agentvm-host\n');
    assert.deepEqual(await agent.waitProcess(SB, 'hn', ''), { exitCode: 0 });
    await agent.removeContainer(SB, 'hn');
  });

  it('creates a container from a busybox bundle, holds it until start, then runs it', async () => {
    const name = await bundle('c1', [
      'sh',
      '-c',
      'echo started; while read line; do echo "got:$line"; done; echo stdin-closed >&2; exec sleep 3600',
    ]);
    const { pid } = await agent.createContainer(SB, { containerId: 'c1', bundle: name });
    assert.ok(pid > 1);
    const [created] = await agent.listContainers(SB);
    assert.equal(created?.status, 'created');
    // Nothing ran yet: the process waits at the start gate.
    assert.equal((await agent.statsContainer(SB, 'c1')).pids >= 1, true);
    await agent.startContainer(SB, 'c1');
    assert.equal((await agent.listContainers(SB))[0]?.status, 'running');
    await assert.rejects(agent.startContainer(SB, 'c1'), InvalidState);
    const text = await outputUntil(agent.readStdout(SB, 'c1', ''), (t) => t.includes('started\n'));
    assert.equal(text, 'started\n');
  });

  it('writes stdin to the container and reads the answers on stdout; closing stdin is seen', async () => {
    await agent.writeStdin(SB, 'c1', '', Buffer.from('one\ntwo\n'));
    const text = await outputUntil(agent.readStdout(SB, 'c1', ''), (t) => t.includes('got:two\n'));
    assert.equal(text, 'started\ngot:one\ngot:two\n');
    await agent.closeStdin(SB, 'c1', '');
    const err = await outputUntil(agent.readStderr(SB, 'c1', ''), (t) => t.includes('stdin-closed'));
    assert.equal(err, 'stdin-closed\n');
  });

  it('execs echo and streams its output to completion with exit code 0', async () => {
    const exited = eventMatching((e) => e.type === 'processExited' && e.execId === 'e1');
    const { pid } = await agent.execProcess(SB, {
      containerId: 'c1',
      execId: 'e1',
      process: { args: ['echo', 'hello from exec'] },
    });
    assert.ok(pid >= 0);
    assert.equal(await textOf(agent.readStdout(SB, 'c1', 'e1')), 'hello from exec\n');
    assert.deepEqual(await agent.waitProcess(SB, 'c1', 'e1'), { exitCode: 0 });
    assert.deepEqual(await exited, {
      type: 'processExited',
      containerId: 'c1',
      execId: 'e1',
      status: { exitCode: 0 },
    });
  });

  it('reports exit codes and signals from wait', async () => {
    await agent.execProcess(SB, {
      containerId: 'c1',
      execId: 'e2',
      process: { args: ['sh', '-c', 'exit 7'] },
    });
    assert.deepEqual(await agent.waitProcess(SB, 'c1', 'e2'), { exitCode: 7 });

    await agent.execProcess(SB, { containerId: 'c1', execId: 'e3', process: { args: ['sleep', '1000'] } });
    await agent.signalProcess(SB, 'c1', 'e3', 'SIGTERM');
    assert.deepEqual(await agent.waitProcess(SB, 'c1', 'e3'), { exitCode: 143, signal: 'SIGTERM' });
    await assert.rejects(agent.signalProcess(SB, 'c1', 'e3', 'SIGTERM'), InvalidState);
    await assert.rejects(agent.signalProcess(SB, 'c1', 'nope', 'SIGTERM'), NotFound);
    await assert.rejects(agent.signalProcess(SB, 'c1', '', 'SIGNOPE'), InvalidArgument);
  });

  it('shares the sandbox pid namespace: a second container sees the processes of the first', async () => {
    const name = await bundle('peer', ['ps']);
    await agent.createContainer(SB, { containerId: 'peer', bundle: name });
    await agent.startContainer(SB, 'peer');
    const ps = await textOf(agent.readStdout(SB, 'peer', ''));
    assert.match(ps, /sleep 3600/);
    await agent.waitProcess(SB, 'peer', '');
    await agent.removeContainer(SB, 'peer');
  });

  it('lists the container processes as json and as a table', async () => {
    const { processes } = await agent.listProcesses(SB, 'c1', 'json');
    assert.ok(
      processes.some((p) => p.command === 'sleep 3600'),
      JSON.stringify(processes),
    );
    const { table } = await agent.listProcesses(SB, 'c1', 'table');
    assert.match(table ?? '', /^PID\tUSER\tCOMMAND\n\d+\troot\tsleep 3600/);
  });

  it('reports cgroup v2 stats and applies a new memory limit', async () => {
    const before = await agent.statsContainer(SB, 'c1');
    assert.ok(before.memoryUsageBytes > 0);
    assert.ok(before.cpuUsageUsec > 0);
    assert.ok(before.pids >= 1);
    assert.equal(before.memoryLimitBytes, undefined, 'no limit in the bundle');
    await agent.updateContainer(SB, 'c1', { memoryLimitBytes: 64 * MiB, pidsLimit: 50 });
    assert.equal((await agent.statsContainer(SB, 'c1')).memoryLimitBytes, 64 * MiB);
  });

  it('pauses and resumes the container', async () => {
    await agent.pauseContainer(SB, 'c1');
    assert.equal((await agent.listContainers(SB)).find((c) => c.containerId === 'c1')?.status, 'paused');
    await assert.rejects(agent.pauseContainer(SB, 'c1'), InvalidState);
    await agent.resumeContainer(SB, 'c1');
    assert.equal((await agent.listContainers(SB)).find((c) => c.containerId === 'c1')?.status, 'running');
  });

  it('reports an OOM kill of a container that exceeds its memory limit', async () => {
    const name = await bundle('oom', ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=128M', 'count=1']);
    const oom = eventMatching((e) => e.type === 'oom' && e.containerId === 'oom');
    await agent.createContainer(SB, {
      containerId: 'oom',
      bundle: name,
      resources: { memoryLimitBytes: 32 * MiB },
    });
    await agent.startContainer(SB, 'oom');
    const status = await agent.waitProcess(SB, 'oom', '');
    assert.deepEqual(status, { exitCode: 137, signal: 'SIGKILL', oomKilled: true });
    await oom;
    const info = (await agent.listContainers(SB)).find((c) => c.containerId === 'oom');
    assert.equal(info?.status, 'stopped');
    await agent.removeContainer(SB, 'oom');
    assert.equal(
      (await agent.listContainers(SB)).find((c) => c.containerId === 'oom'),
      undefined,
    );
  });

  it('copies a file into the share and refuses path traversal', async () => {
    const target = `${guestContract.guestSharedDir}/copied/hello.txt`;
    await agent.copyFile(SB, target, Buffer.from('hello guest'), 0o640);
    assert.equal(await readFile(join(config.sharedDir, 'copied/hello.txt'), 'utf8'), 'hello guest');
    await assert.rejects(
      agent.copyFile(SB, `${guestContract.guestSharedDir}/../../etc/passwd`, Buffer.from('x')),
      InvalidArgument,
    );
    await assert.rejects(agent.copyFile(SB, '/etc/passwd', Buffer.from('x')), InvalidArgument);
  });

  it('keeps containers and buffered output across a dropped client and a new one (daemon restart)', async () => {
    await agent.relayOf(SB)!.dropConnection();
    assert.equal((await agent.listContainers(SB)).find((c) => c.containerId === 'c1')?.status, 'running');
    await agent.disconnect(SB);

    const restarted = createGrpcAgent({ logger, callDeadlineMs: 60_000 });
    try {
      await restarted.connect(SB, handle.agentSocket, { deadlineMs: 60_000 });
      const c1 = (await restarted.listContainers(SB)).find((c) => c.containerId === 'c1');
      assert.equal(c1?.status, 'running');
      assert.deepEqual(
        c1?.processes.map((p) => [p.execId, p.running, p.exit?.exitCode]),
        [
          ['e1', false, 0],
          ['e2', false, 7],
          ['e3', false, 143],
        ],
      );
      const text = await outputUntil(restarted.readStdout(SB, 'c1', ''), (t) => t.includes('got:two\n'));
      assert.equal(text, 'started\ngot:one\ngot:two\n');
      // Output produced while nobody read is there too.
      await restarted.execProcess(SB, {
        containerId: 'c1',
        execId: 'e4',
        process: { args: ['echo', 'later'] },
      });
      await restarted.waitProcess(SB, 'c1', 'e4');
      assert.equal(await textOf(restarted.readStdout(SB, 'c1', 'e4')), 'later\n');
    } finally {
      await restarted.close();
    }
    await agent.connect(SB, handle.agentSocket, { deadlineMs: 60_000 });
  });

  it('runs a container on a terminal: its process sees a 24×80 pty, stdin reaches it, window sizes apply', async () => {
    const name = await bundle('term', [
      'sh',
      '-c',
      'tty; stty size; while read line; do echo "got:$line"; stty size; done',
    ]);
    const configPath = join(config.sharedDir, name, 'config.json');
    const spec = JSON.parse(await readFile(configPath, 'utf8'));
    spec.process.terminal = true;
    await writeFile(configPath, JSON.stringify(spec));
    await agent.createContainer(SB, { containerId: 'term', bundle: name });
    await agent.startContainer(SB, 'term');
    const first = await outputUntil(agent.readStdout(SB, 'term', ''), (t) => /\d+ \d+\r?\n/.test(t));
    assert.match(first, /^\/dev\/pts\/\d+\r\n24 80\r\n$/, 'a terminal nobody sized starts at 24×80, not 0×0');
    await agent.ttyWinResize(SB, 'term', '', 40, 120);
    await agent.writeStdin(SB, 'term', '', Buffer.from('hello\n'));
    const text = await outputUntil(agent.readStdout(SB, 'term', ''), (t) => t.includes('40 120'));
    // The terminal echoes the line, then the process answers; output lines end in \r\n as on any tty.
    assert.match(text, /hello\r\ngot:hello\r\n40 120\r\n$/);
    await agent.ttyWinResize(SB, 'term', '', 25, 80);
    await agent.writeStdin(SB, 'term', '', Buffer.from('again\n'));
    assert.match(
      await outputUntil(agent.readStdout(SB, 'term', ''), (t) => t.includes('25 80')),
      /got:again\r\n25 80\r\n$/,
    );
  });

  it('execs a process on a terminal: tty of the asked size, resize and stdin, then its exit code', async () => {
    await agent.execProcess(SB, {
      containerId: 'term',
      execId: 't1',
      process: {
        args: ['sh', '-c', 'tty; stty size; read answer; stty size; echo "answer:$answer"; exit 3'],
        terminal: true,
        consoleSize: { height: 33, width: 101 },
      },
    });
    const first = await outputUntil(agent.readStdout(SB, 'term', 't1'), (t) => /\d+ \d+\r?\n/.test(t));
    assert.match(first, /^\/dev\/pts\/\d+\r\n33 101\r\n$/, 'the pty has consoleSize before the process runs');
    await agent.ttyWinResize(SB, 'term', 't1', 30, 100);
    await agent.writeStdin(SB, 'term', 't1', Buffer.from('42\n'));
    const text = await textOf(agent.readStdout(SB, 'term', 't1'));
    assert.match(text, /42\r\n30 100\r\nanswer:42\r\n$/);
    assert.deepEqual(await agent.waitProcess(SB, 'term', 't1'), { exitCode: 3 });
    await assert.rejects(agent.ttyWinResize(SB, 'term', 't1', 10, 10), InvalidState);
  });

  it('closing the stdin of a terminal process sends it end-of-file', async () => {
    await agent.execProcess(SB, {
      containerId: 'term',
      execId: 't2',
      process: { args: ['sh', '-c', 'cat; echo cat-ended'], terminal: true },
    });
    await agent.writeStdin(SB, 'term', 't2', Buffer.from('line\n'));
    await outputUntil(agent.readStdout(SB, 'term', 't2'), (t) => /line\r\nline\r\n/.test(t));
    await agent.closeStdin(SB, 'term', 't2');
    assert.deepEqual(await agent.waitProcess(SB, 'term', 't2'), { exitCode: 0 });
    assert.match(await textOf(agent.readStdout(SB, 'term', 't2')), /cat-ended\r\n$/);
  });

  it('refuses a window resize for a process without a terminal', async () => {
    await assert.rejects(agent.ttyWinResize(SB, 'c1', '', 24, 80), InvalidState);
    await agent.signalProcess(SB, 'term', '', 'SIGKILL', true);
    assert.deepEqual(await agent.waitProcess(SB, 'term', ''), { exitCode: 137, signal: 'SIGKILL' });
    await agent.removeContainer(SB, 'term');
  });

  it('kills and removes a running container', async () => {
    await agent.signalProcess(SB, 'c1', '', 'SIGKILL', true);
    assert.deepEqual(await agent.waitProcess(SB, 'c1', ''), { exitCode: 137, signal: 'SIGKILL' });
    await agent.removeContainer(SB, 'c1');
    assert.deepEqual(await agent.listContainers(SB), []);
    await assert.rejects(agent.statsContainer(SB, 'c1'), NotFound);
    assert.ok(events.some((e) => e.type === 'processExited' && e.containerId === 'c1' && e.execId === ''));
  });

  it('destroys the sandbox: the VM powers off and nothing is left on the host', async () => {
    const name = await bundle('last', ['sleep', '3600']);
    await agent.createContainer(SB, { containerId: 'last', bundle: name });
    await agent.startContainer(SB, 'last');
    await agent.destroySandbox(SB);
    await until('VM power off', 60_000, async () =>
      (await isProcessAlive(handle.pid, handle.pidStartTime)) ? undefined : true,
    );
    await agent.disconnect(SB);
    await hypervisor.destroy(SB, config.stateDir);
    assert.deepEqual(await qemuPidsUsing(work), []);
    await assert.rejects(stat(config.stateDir), { code: 'ENOENT' });
  });
});
