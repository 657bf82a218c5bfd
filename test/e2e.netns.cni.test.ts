// A real sandbox on a network namespace wired by Debian's CNI plugins (bridge + host-local + loopback), invoked
// as a CNI runtime does: CNI_COMMAND=ADD with the config on stdin, DEL at the end. The container gets the CNI
// address on eth0, reaches a listener on the bridge gateway, the host reaches the container, and delete leaves
// the namespace's links and tc filters exactly as CNI made them. Run as root.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execIn, openRealWorld, type RealWorld } from './fixtures/hypervisor-world.js';
import { CniBridge, CniNamespace } from './support/cni.js';
import { createHttpdBundle, GUEST_PAGE } from './support/httpd-bundle.js';
import { qemuPidsUsing, until } from './support/vm.js';

const VM_MS = 240_000;
const octet = 10 + (process.pid % 200);

describe('a sandbox on a namespace wired by the CNI bridge plugin', { timeout: 900_000 }, () => {
  let dir: string;
  let world: RealWorld;
  let server: Server;
  let port: number;
  let address: string;
  let linksBefore: string;
  let filtersBefore: string;
  let qdiscsBefore: string;
  let bridge: CniBridge;
  let netns: CniNamespace;
  let gateway: string;
  let nsPath: string;
  const sb = 'cni1';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-cni-'));
    bridge = new CniBridge(`sbxbr${process.pid}`.slice(0, 15), octet, dir);
    gateway = bridge.gateway;
    netns = new CniNamespace(`sbxcni${process.pid}`);
    nsPath = netns.path;
    address = netns.add(bridge);
    assert.match(address, new RegExp(`^10\\.215\\.${octet}\\.\\d+/24$`));
    linksBefore = netns.links();
    filtersBefore = netns.filters();
    qdiscsBefore = netns.qdiscs();
    server = createHttpServer((_, res) => res.end('hello-from-bridge'));
    await new Promise<void>((resolve) => server.listen(0, gateway, resolve));
    port = (server.address() as { port: number }).port;
    await createHttpdBundle(join(dir, 'web'));
    world = await openRealWorld(join(dir, 'world'));
  });

  after(async () => {
    await world?.close().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await new Promise((resolve) => server?.close(resolve));
    netns?.close();
    bridge?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  it('gives the container the CNI address on eth0 and reaches the bridge gateway', {
    timeout: VM_MS,
  }, async () => {
    // CRI's DNSConfig, as the kubelet hands it down for a pod.
    const dns = { servers: [gateway], searches: ['cni.example', 'svc.cni.example'], options: ['ndots:2'] };
    await world.runtime.createSandbox(sb, { network: { mode: 'netns', path: nsPath }, dns });
    await world.runtime.startSandbox(sb);
    assert.deepEqual(world.runtime.getSandbox(sb).dns, dns);
    await world.runtime.createContainer({ sandboxId: sb, id: 'web', bundle: join(dir, 'web') });
    await world.runtime.startContainer(sb, 'web');
    const ip = await execIn(world, sb, 'web', 'ip', ['ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0']);
    assert.deepEqual(ip.status, { exitCode: 0 });
    assert.match(ip.out, new RegExp(`inet ${address.replace(/\./g, '\\.')} `));
    const resolv = await execIn(world, sb, 'web', 'resolv', ['cat', '/etc/resolv.conf']);
    assert.equal(
      resolv.out,
      `nameserver ${gateway}\nsearch cni.example svc.cni.example\noptions ndots:2\n`,
      'the container’s resolv.conf is the sandbox config’s',
    );
    const fetched = await execIn(world, sb, 'web', 'out', ['wget', '-qO-', `http://${gateway}:${port}/`]);
    assert.deepEqual(fetched.status, { exitCode: 0 });
    assert.equal(fetched.out, 'hello-from-bridge');
  });

  it('lets the host reach a server in the container at the CNI address', { timeout: VM_MS }, async () => {
    const ip = address.split('/')[0];
    const body = await until('the guest’s httpd answers on the CNI address', 60_000, async () => {
      const res = await fetch(`http://${ip}:8080/`, { signal: AbortSignal.timeout(5000) }).catch(
        () => undefined,
      );
      return res?.ok ? res.text() : undefined;
    });
    assert.equal(body, GUEST_PAGE);
  });

  it('leaves the links and tc filters as CNI made them after delete', { timeout: VM_MS }, async () => {
    await world.runtime.deleteSandbox(sb, { force: true });
    assert.equal(netns.links(), linksBefore);
    assert.equal(netns.filters(), filtersBefore);
    assert.equal(netns.qdiscs(), qdiscsBefore);
    assert.deepEqual(await qemuPidsUsing(dir), []);
    netns.del('eth0');
    netns.delLoopback();
    assert.doesNotMatch(netns.links(), /eth0/, 'CNI DEL took its veth');
  });
});
