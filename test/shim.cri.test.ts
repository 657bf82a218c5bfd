// Kubernetes' path end to end: containerd's CRI plugin with a runtime handler `sandboxd`
// (runtime_type io.containerd.sandboxd.v1), driven over the CRI v1 API as the kubelet drives it
// (test/support/cri.ts, proto/cri.proto), with Debian's CNI bridge + host-local plugins wiring the pod's
// network namespace. One pod for the whole file: its pause container makes one sandbox VM sized from the
// pod's resources, two containers run in that VM, and stop + remove leave nothing. Run as root.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { mountsUnder } from '../src/actors/index.js';
import { until } from './support/containerd.js';
import {
  IMAGE,
  PAUSE_IMAGE,
  RUNTIME,
  type ShimWorld,
  startShimWorld,
  VM_MS,
} from './support/containerd-world.js';
import { type CriClient, type CriMessage, criClient, streamSession } from './support/cri.js';
import { exists, qemuPidsUsing } from './support/vm.js';

const MiB = 1024 * 1024;
const octet = 10 + (process.pid % 200);
const subnet = `10.216.${octet}.0/24`;
const gateway = `10.216.${octet}.1`;
const bridge = `sbxcri${process.pid}`.slice(0, 15);

const criConfig = (cniDir: string, streamPort: number) =>
  [
    '[plugins."io.containerd.grpc.v1.cri"]',
    `  sandbox_image = "${PAUSE_IMAGE}"`,
    '  stream_server_address = "127.0.0.1"',
    // A real port: containerd builds the Exec/Attach URLs from the configured one (0 would be in them).
    `  stream_server_port = "${streamPort}"`,
    '  disable_apparmor = true',
    '  [plugins."io.containerd.grpc.v1.cri".containerd]',
    '    default_runtime_name = "runc"',
    '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
    '      runtime_type = "io.containerd.runc.v2"',
    '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.sandboxd]',
    `      runtime_type = "${RUNTIME}"`,
    '      pod_annotations = ["io.sandboxd.*"]',
    '  [plugins."io.containerd.grpc.v1.cri".cni]',
    '    bin_dir = "/usr/lib/cni"',
    `    conf_dir = "${cniDir}"`,
  ].join('\n');

/** A TCP port free on 127.0.0.1 now (the kernel's pick, released for containerd's stream server). */
const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });

// CRI's own namespaces (cni-<uuid>): other tests on this machine add and remove theirs meanwhile.
const netnsNames = async () =>
  (await readdir('/run/netns').catch((): string[] => [])).filter((n) => n.startsWith('cni-')).sort();

describe('CRI: a Kubernetes pod in one sandbox VM through containerd and the shim', {
  timeout: 1_800_000,
}, () => {
  let dir: string;
  let world: ShimWorld;
  let cri: CriClient;
  let podId = '';
  let netnsBefore: string[];
  let podNetns = '';
  const containers: Record<string, string> = {};
  const logDir = () => join(dir, 'logs', 'pod1');
  const podConfig = (): CriMessage => ({
    metadata: { name: 'pod1', uid: `uid-${process.pid}`, namespace: 'default', attempt: 0 },
    hostname: 'pod1',
    logDirectory: logDir(),
    labels: { app: 'cri-test' },
    linux: {
      // One CPU and 128 MiB for the pod's containers: the VM gets them on top of its own base size.
      resources: { cpuPeriod: 100_000, cpuQuota: 100_000, memoryLimitInBytes: 128 * MiB },
      securityContext: { namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } },
    },
  });
  // A CRI call; a failure carries the tail of the shim server's log, where containerd's errors come from.
  const rt = (method: string, request: CriMessage) =>
    cri.runtime(method, request).catch(async (err: Error) => {
      err.message += `\n--- shim log (tail) ---\n${(await world.shimLog()).slice(-6000)}`;
      throw err;
    });
  const exec = (container: string, cmd: string[]) =>
    rt('ExecSync', { containerId: containers[container], cmd, timeout: 60 });
  const state = async (container: string) =>
    (await rt('ContainerStatus', { containerId: containers[container] })).status as CriMessage;
  const log = (name: string) => readFile(join(logDir(), `${name}.log`), 'utf8').catch(() => '');
  const sandboxes = () => world.call<{ id: string; state: string }[]>('sandbox.list');
  // The events of a sandbox and its containers (for a failure's message: a container's exit, crun's error).
  const eventsOf = async (sandboxId: string) => {
    const page = await world.call<{ events: { stream: string; type: string; data: unknown }[] }>(
      'events.read',
      {
        limit: 10000,
      },
    );
    return page.events
      .filter((e) => e.stream.includes(sandboxId))
      .map((e) => `${e.stream} ${e.type} ${JSON.stringify(e.data).slice(0, 600)}`)
      .join('\n');
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shim-cri-'));
    await mkdir(join(dir, 'cni'));
    await mkdir(logDir(), { recursive: true });
    await writeFile(
      join(dir, 'cni', '10-sbxcri.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'sbxcri',
        plugins: [
          {
            type: 'bridge',
            bridge,
            isGateway: true,
            ipMasq: false,
            ipam: {
              type: 'host-local',
              subnet,
              gateway,
              routes: [{ dst: '0.0.0.0/0' }],
              dataDir: join(dir, 'ipam'),
            },
          },
        ],
      }),
    );
    netnsBefore = await netnsNames();
    world = await startShimWorld({ cri: criConfig(join(dir, 'cni'), await freePort()) });
    cri = criClient(world.ctrd.address);
    // CRI's image store learns of the imported images from containerd's events: wait until it has both.
    for (const image of [IMAGE, PAUSE_IMAGE]) {
      await until(`CRI to see ${image}`, async () => {
        const r = await cri.image('ImageStatus', { image: { image } });
        return r.image ? true : undefined;
      });
    }
  });

  after(async () => {
    cri?.close();
    try {
      await world?.stop();
    } finally {
      // The bridge plugin leaves its bridge on the host (by design: other pods use it).
      try {
        execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
      } catch {}
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  });

  it('Version names containerd and the v1 API', async () => {
    const v = await rt('Version', { version: 'v1' });
    assert.equal(v.runtimeName, 'containerd');
    assert.equal(v.runtimeApiVersion, 'v1');
  });

  it('RunPodSandbox with the sandboxd handler makes one sandbox VM, sized from the pod, on the CNI address', {
    timeout: VM_MS,
  }, async () => {
    const r = await rt('RunPodSandbox', { config: podConfig(), runtimeHandler: 'sandboxd' });
    podId = r.podSandboxId;
    assert.match(podId, /^[0-9a-f]{64}$/);
    const list = await sandboxes();
    assert.equal(list.length, 1, JSON.stringify(list));
    const view = await world.call<{ state: string; vcpus: number; memoryMiB: number }>('sandbox.status', {
      id: list[0]?.id,
    });
    assert.equal(view.state, 'running');
    // The base size (1 vCPU, 512 MiB) plus what the pod's resources ask for (1 CPU, 128 MiB).
    assert.equal(view.vcpus, 2);
    assert.equal(view.memoryMiB, 512 + 128);
    const r2 = await rt('PodSandboxStatus', { podSandboxId: podId, verbose: true });
    const s = r2.status as CriMessage;
    assert.equal(s.state, 'SANDBOX_READY');
    assert.equal(s.runtimeHandler, 'sandboxd');
    assert.match(s.network.ip, new RegExp(`^10\\.216\\.${octet}\\.\\d+$`));
    // The verbose info names the namespace CRI made (its runtime spec's network namespace path).
    const info = String(r2.info.info ?? '');
    podNetns = info.match(/"(\/[a-z/]*netns\/cni-[0-9a-f-]+)"/)?.[1] ?? '';
    assert.ok(podNetns, `a cni- netns path in the verbose info: ${info.slice(0, 2000)}`);
    assert.ok(await exists(podNetns), `CRI made the pod its network namespace ${podNetns}`);
  });

  it("two containers of the pod run in the pod's VM: the same guest boot id, the pod's CNI address on eth0", {
    timeout: VM_MS,
  }, async () => {
    const script = {
      c1: 'cat /proc/sys/kernel/random/boot_id; echo to-stderr >&2; while [ ! -e /tmp/go ]; do sleep 0.2; done; exit 5',
      c2: 'cat /proc/sys/kernel/random/boot_id; ip -o -4 addr show eth0; exec sleep 100000',
    };
    for (const [name, line] of Object.entries(script)) {
      const r = await rt('CreateContainer', {
        podSandboxId: podId,
        config: {
          metadata: { name, attempt: 0 },
          image: { image: IMAGE },
          command: ['sh', '-c', line],
          logPath: `${name}.log`,
          linux: { resources: { memoryLimitInBytes: 0 } },
        },
        sandboxConfig: podConfig(),
      });
      containers[name] = r.containerId;
      await rt('StartContainer', { containerId: r.containerId });
    }
    const bootIdLine = /^\S+ stdout F ([0-9a-f-]{36})$/m;
    const ids = await Promise.all(
      ['c1', 'c2'].map((n) =>
        until(`${n}'s boot id in its log`, async () => (await log(n)).match(bootIdLine)?.[1]),
      ),
    );
    assert.equal(ids[0], ids[1], 'both containers run on one guest kernel');
    const host = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
    assert.notEqual(ids[0], host, "the guest's kernel, not the host's");
    assert.equal((await sandboxes()).length, 1, 'no second VM');
    const ip = ((await rt('PodSandboxStatus', { podSandboxId: podId })).status as CriMessage).network.ip;
    await until("c2's eth0 in its log", async () =>
      (await log('c2')).includes(`inet ${ip}/24`) ? true : undefined,
    );
  });

  it('ExecSync returns stdout, stderr and the exit code', { timeout: VM_MS }, async () => {
    const r = await exec('c2', ['sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.equal(r.stdout.toString(), 'out\n');
    assert.equal(r.stderr.toString(), 'err\n');
    assert.equal(r.exitCode, 7);
  });

  it('CRI Exec streams over WebSocket (v4.channel.k8s.io): stdout and stderr apart, the exit status on channel 3', {
    timeout: VM_MS,
  }, async () => {
    const { url } = await rt('Exec', {
      containerId: containers.c2,
      cmd: ['sh', '-c', 'echo out; echo err >&2; exit 7'],
      stdout: true,
      stderr: true,
    });
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\//);
    const r = await streamSession(url);
    assert.equal(r.protocol, 'v4.channel.k8s.io');
    assert.equal(r.stdout.toString(), 'out\n');
    assert.equal(r.stderr.toString(), 'err\n');
    const status = JSON.parse(r.status);
    assert.equal(status.status, 'Failure', r.status);
    assert.equal(status.reason, 'NonZeroExitCode', r.status);
    assert.deepEqual(status.details?.causes, [{ reason: 'ExitCode', message: '7' }], r.status);
    // A command that succeeds ends with status Success.
    const ok = await streamSession(
      (await rt('Exec', { containerId: containers.c2, cmd: ['true'], stdout: true, stderr: true })).url,
    );
    assert.equal(JSON.parse(ok.status).status, 'Success', ok.status);
  });

  it('CRI Exec with tty and stdin over WebSocket: input reaches the process, output comes back on the terminal', {
    timeout: VM_MS,
  }, async () => {
    const { url } = await rt('Exec', {
      containerId: containers.c2,
      // containerd applies a resize (ResizePty) and copies stdin concurrently: the script waits up to 5 s for
      // the size to change from the guest pty's default before it prints it.
      cmd: [
        'sh',
        '-c',
        'read line; echo "got:$line"; i=0; while [ "$(stty size)" = "24 80" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; stty size; [ -t 0 ] && echo tty; exit 3',
      ],
      tty: true,
      stdin: true,
      stdout: true,
    });
    const r = await streamSession(url, { input: 'hello\n', resize: { Width: 91, Height: 17 } });
    const text = r.stdout.toString();
    assert.match(text, /got:hello\r?\n/, text);
    assert.match(text, /\btty\r?\n/, text);
    assert.match(text, /17 91/, text);
    assert.equal(r.stderr.length, 0, 'a terminal has one output stream');
    assert.deepEqual(JSON.parse(r.status).details?.causes, [{ reason: 'ExitCode', message: '3' }], r.status);
  });

  it("CRI Attach over WebSocket: stdin reaches the container's init, its stdout and stderr come back, the stream ends with it", {
    timeout: VM_MS,
  }, async () => {
    const c = await rt('CreateContainer', {
      podSandboxId: podId,
      config: {
        metadata: { name: 'c3', attempt: 0 },
        image: { image: IMAGE },
        command: ['sh', '-c', 'read line; echo "attached:$line"; echo bye >&2; exit 4'],
        logPath: 'c3.log',
        stdin: true,
        stdinOnce: true,
      },
      sandboxConfig: podConfig(),
    });
    containers.c3 = c.containerId;
    await rt('StartContainer', { containerId: c.containerId });
    const { url } = await rt('Attach', {
      containerId: c.containerId,
      stdin: true,
      stdout: true,
      stderr: true,
    });
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/attach\//);
    const r = await streamSession(url, { input: 'hi\n' });
    assert.equal(r.stdout.toString(), 'attached:hi\n');
    assert.equal(r.stderr.toString(), 'bye\n');
    assert.equal(JSON.parse(r.status).status, 'Success', r.status);
    const st = await until(
      'c3 EXITED',
      async () => {
        const x = await state('c3');
        return x.state === 'CONTAINER_EXITED' ? x : undefined;
      },
      60_000,
    );
    assert.equal(st.exitCode, 4);
    assert.match(await log('c3'), / stdout F attached:hi$/m);
  });

  it("the container's log at the CRI log path is in CRI format, both streams", async () => {
    const lines = (await log('c1')).split('\n').filter(Boolean);
    assert.ok(lines.length >= 2, lines.join('\n'));
    for (const l of lines)
      assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d) (stdout|stderr) [FP] /);
    assert.ok(
      lines.some((l) => / stderr F to-stderr$/.test(l)),
      lines.join('\n'),
    );
  });

  it('ContainerStatus shows RUNNING, then EXITED with the exit code', { timeout: VM_MS }, async () => {
    assert.equal((await state('c1')).state, 'CONTAINER_RUNNING');
    await exec('c1', ['touch', '/tmp/go']);
    const s = await until(
      'c1 EXITED',
      async () => {
        const st = await state('c1');
        return st.state === 'CONTAINER_EXITED' ? st : undefined;
      },
      60_000,
    );
    assert.equal(s.exitCode, 5);
    assert.ok(s.finishedAt > s.startedAt && s.startedAt > 0, JSON.stringify(s));
  });

  it('ContainerStats answers with the cgroup usage of a running container', { timeout: VM_MS }, async () => {
    const s = (await rt('ContainerStats', { containerId: containers.c2 })).stats as CriMessage;
    assert.equal(s.attributes.id, containers.c2);
    assert.ok(s.memory.workingSetBytes.value > 0 || s.memory.usageBytes.value > 0, JSON.stringify(s.memory));
    assert.ok(s.cpu.usageCoreNanoSeconds.value > 0, JSON.stringify(s.cpu));
  });

  it("UpdateContainerResources changes the container's memory limit in the guest", {
    timeout: VM_MS,
  }, async () => {
    const memoryMax = async () => {
      const r = await exec('c2', [
        'sh',
        '-c',
        'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat "/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/memory.max"',
      ]);
      assert.equal(r.exitCode, 0, r.stderr.toString());
      return r.stdout.toString().trim();
    };
    assert.equal(await memoryMax(), 'max');
    await rt('UpdateContainerResources', {
      containerId: containers.c2,
      linux: { memoryLimitInBytes: 64 * MiB },
    });
    assert.equal(await memoryMax(), String(64 * MiB));
  });

  it("UpdateContainerResources past the pod's size grows its VM first (vCPU and memory hotplug), then applies the limit", {
    timeout: VM_MS,
  }, async () => {
    const [sb] = await sandboxes();
    assert.ok(sb);
    const size = async () => {
      const v = await world.call<{ vcpus: number; memoryMiB: number }>('sandbox.status', { id: sb.id });
      return [v.vcpus, v.memoryMiB];
    };
    assert.deepEqual(await size(), [2, 640]);
    // Base 1 vCPU + 512 MiB, plus c2's 2 CPUs and 512 MiB (c1 has no limits): 3 vCPUs, 1024 MiB.
    await rt('UpdateContainerResources', {
      containerId: containers.c2,
      linux: { memoryLimitInBytes: 512 * MiB, cpuPeriod: 100_000, cpuQuota: 200_000 },
    });
    assert.deepEqual(await size(), [3, 1024]);
    const r = await exec('c2', [
      'sh',
      '-c',
      'cg="/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)"; [ -e /sys/fs/cgroup/memory.max ] && cg=/sys/fs/cgroup; cat "$cg/memory.max" "$cg/cpu.max"; cat /sys/devices/system/cpu/online',
    ]);
    assert.equal(r.exitCode, 0, r.stderr.toString());
    assert.deepEqual(r.stdout.toString().trim().split('\n'), [String(512 * MiB), '200000 100000', '0-2']);
    // Within the new size: nothing more to plug.
    await rt('UpdateContainerResources', {
      containerId: containers.c2,
      linux: { memoryLimitInBytes: 256 * MiB },
    });
    assert.deepEqual(await size(), [3, 1024]);
  });

  it('StopPodSandbox + RemovePodSandbox leave no QEMU, sandbox, mount, socket or netns', {
    timeout: VM_MS,
  }, async () => {
    await rt('StopPodSandbox', { podSandboxId: podId });
    assert.equal(
      ((await rt('PodSandboxStatus', { podSandboxId: podId })).status as CriMessage).state,
      'SANDBOX_NOTREADY',
    );
    await rt('RemovePodSandbox', { podSandboxId: podId });
    await assert.rejects(
      rt('PodSandboxStatus', { podSandboxId: podId }),
      (err: { code?: number }) => err.code === status.NOT_FOUND,
    );
    await until('no sandbox', async () => ((await sandboxes()).length === 0 ? true : undefined));
    assert.deepEqual(await qemuPidsUsing(world.dir), []);
    assert.equal(await exists(podNetns), false, `${podNetns} is gone`);
    assert.deepEqual(
      (await netnsNames()).filter((n) => !netnsBefore.includes(n)),
      [],
      'no netns of CRI left',
    );
    assert.deepEqual(await mountsUnder(world.ctrd.dir), []);
    // Sockets, the shim server and anything else left are checked by world.stop() in after().
  });

  it("a pod annotation io.sandboxd.* with a bad value fails RunPodSandbox by the annotation's name, leaving nothing", {
    timeout: VM_MS,
  }, async () => {
    const before = await netnsNames();
    const config = {
      ...podConfig(),
      metadata: { name: 'bad', uid: `bad-${process.pid}`, namespace: 'default' },
    };
    await assert.rejects(
      cri.runtime('RunPodSandbox', {
        config: { ...config, annotations: { 'io.sandboxd.vcpus': 'lots' } },
        runtimeHandler: 'sandboxd',
      }),
      (err: Error) => /annotation io\.sandboxd\.vcpus: 'lots' is not an integer/.test(err.message),
    );
    assert.deepEqual(await sandboxes(), []);
    assert.deepEqual(
      (await netnsNames()).filter((n) => !before.includes(n)),
      [],
      'no netns made',
    );
  });

  it("a pod annotation io.sandboxd.memory-mib (pod_annotations passes it through) sets the pod VM's size", {
    timeout: VM_MS,
  }, async () => {
    const config: CriMessage = {
      ...podConfig(),
      metadata: { name: 'sized', uid: `sized-${process.pid}`, namespace: 'default' },
      annotations: { 'io.sandboxd.memory-mib': '768' },
      linux: { securityContext: { namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    };
    const id = (await rt('RunPodSandbox', { config, runtimeHandler: 'sandboxd' })).podSandboxId;
    try {
      const [sb] = await sandboxes();
      assert.ok(
        sb,
        `the pod's sandbox is there\n--- shim log (tail) ---\n${(await world.shimLog()).slice(-6000)}`,
      );
      const view = await world.call<{ vcpus: number; memoryMiB: number }>('sandbox.status', { id: sb.id });
      // No pod resources: the base vCPU; the annotation's memory outright (not added to the base).
      assert.deepEqual([view.vcpus, view.memoryMiB], [1, 768]);
    } finally {
      await rt('StopPodSandbox', { podSandboxId: id });
      await rt('RemovePodSandbox', { podSandboxId: id });
    }
    await until('no sandbox', async () => ((await sandboxes()).length === 0 ? true : undefined));
    assert.deepEqual(await qemuPidsUsing(world.dir), []);
    assert.deepEqual(
      (await netnsNames()).filter((n) => !netnsBefore.includes(n)),
      [],
      'no netns of CRI left',
    );
  });

  it("a hostNetwork pod (network NODE) runs on the VM's user-mode network; ExecSync in its container works; stop/remove leave nothing", {
    timeout: VM_MS,
  }, async () => {
    const config: CriMessage = {
      ...podConfig(),
      metadata: { name: 'hostnet', uid: `hostnet-${process.pid}`, namespace: 'default' },
      hostname: 'hostnet-node',
      logDirectory: join(dir, 'logs', 'hostnet'),
      linux: { securityContext: { namespaceOptions: { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' } } },
    };
    await mkdir(config.logDirectory, { recursive: true });
    const before = await netnsNames();
    const id = (await rt('RunPodSandbox', { config, runtimeHandler: 'sandboxd' })).podSandboxId;
    try {
      const [sb] = await sandboxes();
      assert.ok(sb, "the pod's sandbox is there");
      // The pause container's exit used to end such a pod a second or so after its start: still READY later.
      await new Promise((r) => setTimeout(r, 3000));
      const st = (await rt('PodSandboxStatus', { podSandboxId: id })).status as CriMessage;
      assert.equal(
        st.state,
        'SANDBOX_READY',
        `the pod is READY; its sandbox's events:\n${await eventsOf(sb.id)}`,
      );
      const view = await world.call<{ config: { network?: unknown } }>('sandbox.status', { id: sb.id });
      assert.equal(view.config.network, 'user', JSON.stringify(view.config));
      const c = await rt('CreateContainer', {
        podSandboxId: id,
        config: {
          metadata: { name: 'h1', attempt: 0 },
          image: { image: IMAGE },
          command: ['sleep', '100000'],
          logPath: 'h1.log',
        },
        sandboxConfig: config,
      });
      await rt('StartContainer', { containerId: c.containerId });
      const r = await rt('ExecSync', {
        containerId: c.containerId,
        cmd: ['sh', '-c', 'cat /proc/sys/kernel/random/boot_id; hostname; ip -o -4 addr show eth0'],
        timeout: 60,
      });
      assert.equal(r.exitCode, 0, r.stderr.toString());
      const [bootId, hostname] = r.stdout.toString().split('\n');
      const host = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
      assert.notEqual(bootId, host, "the guest's kernel");
      // The spec's hostname without a UTS namespace (crun refuses that) became the VM's: the pod's "node".
      assert.equal(hostname, 'hostnet-node');
      // QEMU's user-mode network: the guest's eth0 is 10.0.2.15.
      assert.match(r.stdout.toString(), /inet 10\.0\.2\.15\//);
    } finally {
      await rt('StopPodSandbox', { podSandboxId: id });
      await rt('RemovePodSandbox', { podSandboxId: id });
    }
    await until('no sandbox', async () => ((await sandboxes()).length === 0 ? true : undefined));
    assert.deepEqual(await qemuPidsUsing(world.dir), []);
    assert.deepEqual(
      (await netnsNames()).filter((n) => !before.includes(n)),
      [],
      'no netns made',
    );
    assert.deepEqual(await mountsUnder(world.ctrd.dir), []);
  });
});
