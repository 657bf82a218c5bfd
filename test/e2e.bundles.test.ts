// OCI bundles from other tools run unchanged in a real sandbox: runc spec, umoci unpack, a rootfs that is a mount
// point; the rootfs is shared (not copied) and seen as it is on the host; symlinks cannot reach the host; host hooks.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, copyFile, link, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { mountsUnder, unmountAllUnder } from '../src/actors/index.js';
import { unionCpuLists } from '../src/bundle/index.js';
import { affinityOf, hostOnline } from '../src/hypervisor/index.js';
import { busyboxPath } from '../src/image/index.js';
import { execIn, openRealWorld, type RealWorld, stdoutOf, worldPaths } from './fixtures/hypervisor-world.js';
import { qemuPidsUsing } from './support/vm.js';

const run = promisify(execFile);
const VM_MS = 240_000;

/** A minimal busybox rootfs at `rootfs` (the applets the tests call, as symlinks). */
async function busyboxRootfs(rootfs: string): Promise<void> {
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'tmp', 'etc']) await mkdir(join(rootfs, d), { recursive: true });
  await copyFile(await busyboxPath(), join(rootfs, 'bin', 'busybox'));
  await chmod(join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'cat', 'ls', 'stat', 'echo', 'sleep', 'id', 'touch', 'readlink']) {
    await symlink('busybox', join(rootfs, 'bin', applet));
  }
}

/** What `stat` says of each path, in a format both sides print the same (busybox on both). */
const STAT_FORMAT = '%n %u:%g %a %F %h %s %t:%T';
const SPECIAL = ['owned', 'suid', 'hard1', 'hard2', 'fifo', 'sock', 'null', 'big', 'link'];

describe('OCI bundles from other tools in a real sandbox', { timeout: 900_000 }, () => {
  let dir: string;
  let world: RealWorld;
  let sandboxDir: string;
  const sb = 'oci';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-oci-'));
    world = await openRealWorld(join(dir, 'world'));
    sandboxDir = join(worldPaths(join(dir, 'world')).state, 'sandboxes', sb);
    await world.runtime.createSandbox(sb, {});
    await world.runtime.startSandbox(sb);
  });

  after(async () => {
    await world?.runtime.deleteSandbox(sb, { force: true }).catch(() => undefined);
    await world?.close().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await unmountAllUnder(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('runs a bundle made by `runc spec` unchanged but for its command', { timeout: VM_MS }, async () => {
    const bundle = join(dir, 'runc');
    await mkdir(bundle);
    await run('runc', ['spec'], { cwd: bundle });
    await busyboxRootfs(join(bundle, 'rootfs'));
    await world.runtime.createContainer({
      sandboxId: sb,
      id: 'runc',
      bundle,
      process: { args: ['sh', '-c', 'echo runc-ok; id -u'] },
    });
    const out = stdoutOf(world, sb, 'runc', '');
    await world.runtime.startContainer(sb, 'runc');
    assert.equal((await world.runtime.waitContainer(sb, 'runc')).exitCode, 0);
    assert.equal(await out, 'runc-ok\n0\n');
    await world.runtime.deleteContainer(sb, 'runc');
  });

  it("pins the VM to the bundle's cpuset on the host (the guest never sees host CPU ids), and unpins it at delete", {
    timeout: VM_MS,
  }, async () => {
    const online = await hostOnline('cpu');
    const last = online.split(/[-,]/).pop() as string;
    const bundle = join(dir, 'cpuset');
    await mkdir(bundle);
    await run('runc', ['spec'], { cwd: bundle });
    await busyboxRootfs(join(bundle, 'rootfs'));
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8'));
    // The host's last CPU: a 1-vCPU guest has no such CPU, and crun there would refuse it as its cpuset.
    spec.linux.resources = { ...spec.linux.resources, cpu: { cpus: last, mems: await hostOnline('node') } };
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
    const pid = world.runtime.getSandbox(sb).pid as number;
    const affinity = async () => unionCpuLists([await affinityOf(pid)]);
    await world.runtime.createContainer({
      sandboxId: sb,
      id: 'cpuset',
      bundle,
      process: { args: ['echo', 'ok'] },
    });
    assert.equal(await affinity(), last);
    const out = stdoutOf(world, sb, 'cpuset', '');
    await world.runtime.startContainer(sb, 'cpuset');
    assert.equal((await world.runtime.waitContainer(sb, 'cpuset')).exitCode, 0);
    assert.equal(await out, 'ok\n');
    await world.runtime.deleteContainer(sb, 'cpuset');
    assert.equal(await affinity(), unionCpuLists([online]), 'back on every CPU once no container asks');
  });

  it('runs a bundle made by `umoci unpack` of an image built offline, unchanged', {
    timeout: VM_MS,
  }, async () => {
    const layout = join(dir, 'img');
    const layer = join(dir, 'layer');
    await busyboxRootfs(layer);
    await run('umoci', ['init', '--layout', layout]);
    await run('umoci', ['new', '--image', `${layout}:latest`]);
    await run('umoci', ['insert', '--image', `${layout}:latest`, join(layer, 'bin'), '/bin']);
    await run('umoci', [
      'config',
      '--image',
      `${layout}:latest`,
      ...['--config.cmd', 'sh', '--config.cmd', '-c', '--config.cmd', 'echo umoci-ok; hostname'],
    ]);
    const bundle = join(dir, 'umoci');
    await run('umoci', ['unpack', '--image', `${layout}:latest`, bundle]);
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8'));
    assert.ok(
      spec.linux.namespaces.some((ns: { type: string }) => ns.type === 'network'),
      'umoci asks for a network namespace (the VM network is used instead)',
    );
    await world.runtime.createContainer({ sandboxId: sb, id: 'umoci', bundle });
    const out = stdoutOf(world, sb, 'umoci', '');
    await world.runtime.startContainer(sb, 'umoci');
    assert.equal((await world.runtime.waitContainer(sb, 'umoci')).exitCode, 0);
    // umoci's spec asks for a terminal: the output arrives through it, with CRLF line ends.
    assert.equal((await out).replace(/\r/g, ''), 'umoci-ok\numoci-default\n');
    await world.runtime.deleteContainer(sb, 'umoci');
  });

  it('shows the rootfs as it is on the host: owners, modes, setuid, hard links, FIFOs, sockets, devices, big files', {
    timeout: VM_MS,
  }, async () => {
    const bundle = join(dir, 'special');
    const rootfs = join(bundle, 'rootfs');
    await busyboxRootfs(rootfs);
    await writeFile(join(bundle, 'config.json'), JSON.stringify(specFor(['sleep', '100000'])));
    const s = join(rootfs, 'srv');
    await mkdir(s);
    await writeFile(join(s, 'owned'), 'x');
    await run('chown', ['1000:1000', join(s, 'owned')]);
    await writeFile(join(s, 'suid'), 'x');
    await chmod(join(s, 'suid'), 0o4755);
    await writeFile(join(s, 'hard1'), 'same');
    await link(join(s, 'hard1'), join(s, 'hard2'));
    await run('mkfifo', [join(s, 'fifo')]);
    await run('python3', [
      '-c',
      `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(join(s, 'sock'))})`,
    ]);
    await run('mknod', [join(s, 'null'), 'c', '1', '3']);
    await run('truncate', ['-s', '200M', join(s, 'big')]);
    await symlink('hard1', join(s, 'link'));
    const started = Date.now();
    await world.runtime.createContainer({ sandboxId: sb, id: 'special', bundle });
    const createMs = Date.now() - started;
    await world.runtime.startContainer(sb, 'special');
    assert.ok(
      (await mountsUnder(sandboxDir)).some((m) => m.endsWith('/special/rootfs')),
      'the rootfs is a bind, not a copy',
    );

    const paths = SPECIAL.map((name) => `/srv/${name}`);
    const inside = await execIn(world, sb, 'special', 'stat', ['stat', '-c', STAT_FORMAT, ...paths]);
    assert.deepEqual(inside.status, { exitCode: 0 });
    const host = await run(await busyboxPath(), ['stat', '-c', STAT_FORMAT, ...SPECIAL], { cwd: s });
    const hostLines = host.stdout
      .trim()
      .split('\n')
      .map((line) => `/srv/${line}`);
    assert.deepEqual(inside.out.trim().split('\n'), hostLines);
    const suid = await execIn(world, sb, 'special', 'cat', ['cat', '/srv/hard2']);
    assert.equal(suid.out, 'same');
    assert.ok(createMs < 60_000, `create took ${createMs} ms`);
    await world.runtime.deleteContainer(sb, 'special', { force: true });
    assert.deepEqual(await mountsUnder(sandboxDir), [], 'the rootfs is unbound on delete');
    assert.equal(await readFile(join(s, 'hard1'), 'utf8'), 'same', 'host files survive the delete');
  });

  it('resolves symlinks to / and ../../.. inside the guest, never on the host', {
    timeout: VM_MS,
  }, async () => {
    const bundle = join(dir, 'deep', 'a', 'escape');
    const rootfs = join(bundle, 'rootfs');
    await busyboxRootfs(rootfs);
    await writeFile(join(rootfs, 'inside-marker'), 'in');
    await writeFile(join(dir, 'deep', 'host-secret'), 'secret');
    await writeFile(join(dir, 'deep', 'a', 'host-secret'), 'secret');
    await symlink('/', join(rootfs, 'toroot'));
    await symlink('../../..', join(rootfs, 'up'));
    await writeFile(join(bundle, 'config.json'), JSON.stringify(specFor(['sleep', '100000'])));
    await world.runtime.createContainer({ sandboxId: sb, id: 'escape', bundle });
    await world.runtime.startContainer(sb, 'escape');
    const probe = await execIn(world, sb, 'escape', 'probe', [
      'sh',
      '-c',
      'cat /toroot/inside-marker /up/inside-marker; cat /up/host-secret /toroot/../host-secret 2>/dev/null; echo " $?"',
    ]);
    assert.equal(probe.out, 'inin 1\n');
    await world.runtime.deleteContainer(sb, 'escape', { force: true });
  });

  it('runs a rootfs that is itself a mount point, given as an absolute root.path, read-only when asked', {
    timeout: VM_MS,
  }, async () => {
    const mounted = join(dir, 'snapshot');
    await mkdir(mounted);
    await run('mount', ['-t', 'tmpfs', 'tmpfs', mounted]);
    try {
      await busyboxRootfs(mounted);
      const bundle = join(dir, 'abs');
      await mkdir(bundle);
      await writeFile(
        join(bundle, 'config.json'),
        JSON.stringify({
          ...specFor(['sh', '-c', 'echo abs-ok; touch /newfile 2>/dev/null; echo " $?"']),
          root: { path: mounted, readonly: true },
        }),
      );
      await world.runtime.createContainer({ sandboxId: sb, id: 'abs', bundle });
      const out = stdoutOf(world, sb, 'abs', '');
      await world.runtime.startContainer(sb, 'abs');
      assert.equal((await world.runtime.waitContainer(sb, 'abs')).exitCode, 0);
      assert.equal(await out, 'abs-ok\n 1\n', 'a read-only rootfs refuses writes');
      await world.runtime.deleteContainer(sb, 'abs');
    } finally {
      await unmountAllUnder(mounted).catch(() => undefined);
    }
  });

  it('runs host hooks in the spec order with the state JSON, and a failing prestart fails the create leaving nothing', {
    timeout: VM_MS,
  }, async () => {
    const bundle = join(dir, 'hooks');
    await busyboxRootfs(join(bundle, 'rootfs'));
    const log = join(dir, 'hooks.log');
    const hook = join(dir, 'hook.sh');
    await writeFile(hook, `#!/bin/sh\n{ printf '%s ' "$1"; cat; echo; } >> ${log}\nexit \${FAIL:-0}\n`);
    await chmod(hook, 0o755);
    const h = (phase: string, env: string[] = []) => ({ path: hook, args: ['hook.sh', phase], env });
    await writeFile(
      join(bundle, 'config.json'),
      JSON.stringify({
        ...specFor(['sh', '-c', 'echo hooked']),
        annotations: { team: 'a' },
        hooks: {
          prestart: [h('prestart')],
          createRuntime: [h('createRuntime')],
          poststart: [h('poststart')],
          poststop: [h('poststop')],
        },
      }),
    );
    await world.runtime.createContainer({ sandboxId: sb, id: 'hooked', bundle });
    await world.runtime.startContainer(sb, 'hooked');
    await world.runtime.waitContainer(sb, 'hooked');
    await world.runtime.deleteContainer(sb, 'hooked');
    const lines = (await readFile(log, 'utf8')).trim().split('\n');
    assert.deepEqual(
      lines.map((l) => l.split(' ')[0]),
      ['prestart', 'createRuntime', 'poststart', 'poststop'],
    );
    const states = lines.map((l) => JSON.parse(l.slice(l.indexOf(' ') + 1)));
    assert.deepEqual(
      states.map((s) => s.status),
      ['created', 'created', 'running', 'stopped'],
    );
    for (const s of states) {
      assert.equal(s.id, 'hooked');
      assert.equal(s.bundle, bundle);
      assert.deepEqual(s.annotations, { team: 'a' });
      assert.ok(s.pid > 0, 'the pid of the QEMU that holds the container');
    }

    const failing = join(dir, 'failing');
    await busyboxRootfs(join(failing, 'rootfs'));
    await writeFile(
      join(failing, 'config.json'),
      JSON.stringify({ ...specFor(['sleep', '1000']), hooks: { prestart: [h('bad', ['FAIL=7'])] } }),
    );
    await assert.rejects(
      world.runtime.createContainer({ sandboxId: sb, id: 'bad', bundle: failing }),
      /exited 7/,
    );
    assert.deepEqual(await mountsUnder(sandboxDir), [], 'nothing stays mounted after a failed create');
  });
});

/** A small runtime-spec config (what `sandboxctl bundle` writes, minus the busybox specifics). */
function specFor(args: string[]): Record<string, unknown> {
  return {
    ociVersion: '1.0.2',
    process: { args, env: ['PATH=/bin'], cwd: '/', user: { uid: 0, gid: 0 } },
    root: { path: 'rootfs' },
    hostname: 'oci',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755'] },
    ],
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'network' }] },
  };
}
