// User networking end to end, for real: a QEMU NIC behind slirp, a published port into a container, and outbound.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InvalidArgument } from '../src/errors/index.js';
import { execIn, openRealWorld, type RealWorld } from './fixtures/hypervisor-world.js';
import { createHttpdBundle, GUEST_PAGE } from './support/httpd-bundle.js';
import { freePort, qemuPidsUsing, until } from './support/vm.js';

const VM_MS = 180_000;

describe('user networking of a real sandbox', { timeout: 600_000 }, () => {
  let dir: string;
  let world: RealWorld;
  let hostServer: Server;
  let hostPort: number;
  let published: number;
  const sb = 'net';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-net-'));
    await createHttpdBundle(join(dir, 'web'));
    hostServer = createHttpServer((_, res) => res.end('hello-from-host'));
    await new Promise<void>((resolve) => hostServer.listen(0, '127.0.0.1', resolve));
    hostPort = (hostServer.address() as { port: number }).port;
    published = await freePort();
    world = await openRealWorld(join(dir, 'world'));
  });

  after(async () => {
    await world?.close().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await new Promise((resolve) => hostServer?.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it('boots with eth0 on the user network and its default route', { timeout: VM_MS }, async () => {
    await world.runtime.createSandbox(sb, {
      network: 'user',
      ports: [{ hostPort: published, guestPort: 8080 }],
    });
    await world.runtime.startSandbox(sb);
    const eth0 = (await world.runtime.listInterfaces(sb)).find((i) => i.name === 'eth0');
    assert.ok(eth0, 'eth0 exists');
    assert.equal(eth0.up, true);
    assert.ok(eth0.addresses.includes('10.0.2.15/24'), JSON.stringify(eth0));
    const routes = await world.runtime.listRoutes(sb);
    assert.ok(
      routes.some((r) => r.gateway === '10.0.2.2' && ['default', '0.0.0.0', '0.0.0.0/0'].includes(r.dest)),
      JSON.stringify(routes),
    );
  });

  it('serves a container port on the published host port', { timeout: VM_MS }, async () => {
    await world.runtime.createContainer({ sandboxId: sb, id: 'web', bundle: join(dir, 'web') });
    await world.runtime.startContainer(sb, 'web');
    const body = await until('the published port answers', 60_000, async () => {
      // QEMU's NAT accepts before the guest listens, and such a connection may never answer: a bounded try.
      const res = await fetch(`http://127.0.0.1:${published}/`, { signal: AbortSignal.timeout(5000) }).catch(
        () => undefined,
      );
      return res?.ok ? res.text() : undefined;
    });
    assert.equal(body, GUEST_PAGE);
  });

  it('reaches the host from the container, and resolves through the sandbox resolv.conf', async () => {
    const fetched = await execIn(world, sb, 'web', 'out', ['wget', '-qO-', `http://10.0.2.2:${hostPort}/`]);
    assert.deepEqual(fetched.status, { exitCode: 0 });
    assert.equal(fetched.out, 'hello-from-host');
    const resolv = await execIn(world, sb, 'web', 'dns', ['cat', '/etc/resolv.conf']);
    assert.match(resolv.out, /^nameserver 10\.0\.2\.3$/m);
  });

  it('changes the guest network on request (recorded in the log), sets its clock and reseeds it', async () => {
    const eth0 = await world.runtime.updateInterface(sb, {
      name: 'eth0',
      addresses: ['10.0.2.15/24', '10.0.2.16/24'],
      mtu: 1400,
    });
    assert.equal(eth0.mtu, 1400);
    assert.deepEqual([...eth0.addresses].sort(), ['10.0.2.15/24', '10.0.2.16/24']);
    const routes = await world.runtime.updateRoutes(sb, [{ dest: '10.99.0.0/16', gateway: '10.0.2.2' }]);
    assert.ok(
      routes.some((r) => r.dest.startsWith('10.99.0.0') && r.gateway === '10.0.2.2'),
      JSON.stringify(routes),
    );
    const types: string[] = [];
    for await (const e of world.store.readStream(`sandbox-${sb}`)) types.push(e.type);
    assert.equal(types.filter((t) => t === 'GuestNetworkUpdated').length, 2);
    await assert.rejects(world.runtime.updateInterface(sb, { name: 'nope0', addresses: [] }), /nope0/);

    await world.runtime.setGuestTime(sb, new Date('2031-02-03T04:05:06Z'));
    const year = await execIn(world, sb, 'web', 'year', ['date', '-u', '+%Y']);
    assert.equal(year.out.trim(), '2031');
    const now = await world.runtime.setGuestTime(sb);
    assert.ok(Math.abs(now.getTime() - Date.now()) < 5000);
    assert.equal(await world.runtime.reseedGuestRandom(sb), 64);
  });

  it('reports what the VM costs the host next to its containers’ stats', async () => {
    const stats = await world.runtime.sandboxStats(sb);
    assert.ok(stats.vm, 'QEMU usage reported');
    assert.equal(stats.vm.pid, stats.sandbox.pid);
    assert.ok(stats.vm.cpuSeconds > 0.5, `a TCG boot takes CPU: ${stats.vm.cpuSeconds}`);
    assert.ok(stats.vm.rssBytes > 32 * 1024 * 1024, `QEMU holds guest memory: ${stats.vm.rssBytes}`);
    assert.ok(stats.vm.threads >= 2);
    assert.ok(stats.containers.web && stats.containers.web.pids >= 1, JSON.stringify(stats.containers));
  });

  it('refuses to start a second sandbox on a host port already forwarded, naming it, recording nothing', async () => {
    await world.runtime.createSandbox('clash', {
      network: 'user',
      ports: [{ hostPort: published, guestPort: 80 }],
    });
    const seq = world.store.lastSeq();
    await assert.rejects(world.runtime.startSandbox('clash'), (err: Error) => {
      assert.ok(err instanceof InvalidArgument, String(err));
      assert.equal(err.field, 'config.ports.0.hostPort');
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${published}/tcp`));
      return true;
    });
    assert.equal(world.store.lastSeq(), seq, 'nothing recorded');
    assert.equal(world.runtime.getSandbox('clash').state, 'created');
    assert.deepEqual(await qemuPidsUsing(join(dir, 'world', 'state', 'sandboxes', 'clash')), []);
  });

  it('frees the host port when the sandbox is deleted', { timeout: VM_MS }, async () => {
    await world.runtime.stopSandbox(sb);
    await world.runtime.deleteSandbox(sb);
    await new Promise<void>((resolve, reject) => {
      const again = createServer();
      again.once('error', reject);
      again.listen(published, '127.0.0.1', () => again.close(() => resolve()));
    });
    // The sandbox refused for that port starts now that it is free.
    assert.equal((await world.runtime.startSandbox('clash')).state, 'running');
    await world.runtime.deleteSandbox('clash', { force: true });
  });
});
