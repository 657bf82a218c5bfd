// A real sandbox on a network namespace wired as CNI's ptp plugin would: a veth with 10.214.x.2/24 in the
// namespace, its peer 10.214.x.1/24 on the host, a default route. The container reaches the host's HTTP server,
// the host reaches the guest, and delete leaves the namespace as it found it. Run as root.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InvalidArgument } from '../src/errors/index.js';
import { tapName } from '../src/network/index.js';
import { execIn, openRealWorld, type RealWorld } from './fixtures/hypervisor-world.js';
import { createHttpdBundle, GUEST_PAGE } from './support/httpd-bundle.js';
import { qemuPidsUsing, until } from './support/vm.js';

const VM_MS = 240_000;
const octet = 10 + (process.pid % 200);
const hostIp = `10.214.${octet}.1`;
const guestIp = `10.214.${octet}.2`;
const ns = `sbxe2e${process.pid}`;
const nsPath = `/run/netns/${ns}`;
const resolvDir = `/etc/netns/${ns}`;
const hostVeth = `sbxe${process.pid}`.slice(0, 15);
const sh = (...argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
const links = () => sh('ip', '-n', ns, '-o', 'link', 'show').replace(/\\.*$/gm, '').trim();
const qdiscs = () => sh('tc', '-n', ns, 'qdisc', 'show').trim();

describe('a sandbox on a network namespace (netns mode)', { timeout: 900_000 }, () => {
  let dir: string;
  let world: RealWorld;
  let server: Server;
  let port: number;
  let linksBefore: string;
  let qdiscsBefore: string;
  const sb = 'netns1';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-netns-'));
    sh('ip', 'netns', 'add', ns);
    sh('ip', 'link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    sh('ip', 'addr', 'add', `${hostIp}/24`, 'dev', hostVeth);
    sh('ip', 'link', 'set', hostVeth, 'up');
    sh('ip', '-n', ns, 'addr', 'add', `${guestIp}/24`, 'dev', 'eth0');
    sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    sh('ip', '-n', ns, 'route', 'add', 'default', 'via', hostIp);
    // ip-netns(8)'s convention: `ip netns exec` would show this file as the namespace's /etc/resolv.conf.
    await mkdir(resolvDir, { recursive: true });
    await writeFile(
      join(resolvDir, 'resolv.conf'),
      `# for ${ns}\nnameserver ${hostIp}\nsearch netns.example\n`,
    );
    linksBefore = links();
    qdiscsBefore = qdiscs();
    server = createHttpServer((_, res) => res.end('hello-from-host'));
    await new Promise<void>((resolve) => server.listen(0, hostIp, resolve));
    port = (server.address() as { port: number }).port;
    await createHttpdBundle(join(dir, 'web'));
    world = await openRealWorld(join(dir, 'world'));
  });

  after(async () => {
    await world?.close().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await new Promise((resolve) => server?.close(resolve));
    try {
      // Takes the namespace's end of the veth pair, and with it the host's end and any tap left.
      sh('ip', 'netns', 'del', ns);
    } catch {
      // never made
    }
    await rm(dir, { recursive: true, force: true });
    await rm(resolvDir, { recursive: true, force: true });
  });

  it('refuses a path that is not a network namespace before recording anything', async () => {
    const seq = world.store.lastSeq();
    await assert.rejects(
      world.runtime.createSandbox('bad', { network: { mode: 'netns', path: join(dir, 'nope') } }),
      (err: unknown) => err instanceof InvalidArgument && err.field === 'config.network.path',
    );
    assert.equal(world.store.lastSeq(), seq, 'nothing recorded');
  });

  it('boots with the veth’s address and routes, wired by a tap and redirects', {
    timeout: VM_MS,
  }, async () => {
    await world.runtime.createSandbox(sb, { network: { mode: 'netns', path: nsPath } });
    await world.runtime.startSandbox(sb);
    const eth0 = (await world.runtime.listInterfaces(sb)).find((i) => i.addresses.includes(`${guestIp}/24`));
    assert.ok(eth0, JSON.stringify(await world.runtime.listInterfaces(sb)));
    assert.equal(eth0.up, true);
    const routes = await world.runtime.listRoutes(sb);
    assert.ok(
      routes.some((r) => r.dest === 'default' && r.gateway === hostIp),
      JSON.stringify(routes),
    );
    const tap = tapName(sb, 0);
    assert.match(links(), new RegExp(`${tap}.*UP`));
    assert.match(
      sh('tc', '-n', ns, 'filter', 'show', 'dev', 'eth0', 'ingress'),
      new RegExp(`redirect to device ${tap}`, 'i'),
    );
    const attached = [];
    for await (const e of world.store.readStream(`sandbox-${sb}`))
      if (e.type === 'SandboxNetworkAttached') attached.push(e.data);
    assert.deepEqual(
      attached.map((d) => (d as { wiring: { links: { veth: string; tap: string }[] } }).wiring.links),
      [[{ veth: 'eth0', tap, mac: eth0.mac, mtu: 1500, addresses: [`${guestIp}/24`] }]],
    );
  });

  it('lets a container reach the host, and the host reach the container', { timeout: VM_MS }, async () => {
    await world.runtime.createContainer({ sandboxId: sb, id: 'web', bundle: join(dir, 'web') });
    await world.runtime.startContainer(sb, 'web');
    const fetched = await execIn(world, sb, 'web', 'out', ['wget', '-qO-', `http://${hostIp}:${port}/`]);
    assert.deepEqual(fetched.status, { exitCode: 0 });
    assert.equal(fetched.out, 'hello-from-host');
    const resolv = await execIn(world, sb, 'web', 'resolv', ['cat', '/etc/resolv.conf']);
    assert.equal(resolv.out, `nameserver ${hostIp}\nsearch netns.example\n`, '/etc/netns/NAME/resolv.conf');
    assert.deepEqual(world.runtime.getSandbox(sb).dns, {
      servers: [hostIp],
      searches: ['netns.example'],
      options: [],
    });
    const body = await until('the guest’s httpd answers on the veth address', 60_000, async () => {
      const res = await fetch(`http://${guestIp}:8080/`, { signal: AbortSignal.timeout(5000) }).catch(
        () => undefined,
      );
      return res?.ok ? res.text() : undefined;
    });
    assert.equal(body, GUEST_PAGE);
  });

  it('leaves the namespace as it found it after delete', { timeout: VM_MS }, async () => {
    await world.runtime.deleteSandbox(sb, { force: true });
    assert.equal(links(), linksBefore);
    assert.equal(qdiscs(), qdiscsBefore);
    assert.deepEqual(await qemuPidsUsing(dir), []);
  });
});
