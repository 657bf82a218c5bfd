// The sandbox lifecycle on a real network namespace, over the fake VM world (as root): the wiring is recorded
// before the VM launch, given to the guest, undone by a failed start, a stop and a delete, redone once by a start,
// and released (an event) as soon as the VM dies while the daemon runs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { HypervisorError } from '../src/errors/index.js';
import { tapName } from '../src/network/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';
import { until } from './support/vm.js';

const ns = `sbxlc${process.pid}`;
const path = `/run/netns/${ns}`;
const sh = (...argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
const links = () => sh('ip', '-n', ns, '-o', 'link', 'show').replace(/\\.*$/gm, '').trim();
const qdiscs = () => sh('tc', '-n', ns, 'qdisc', 'show').trim();

describe('a sandbox on a network namespace over the fake world', () => {
  let h: Harness;
  let mac: string;
  let pristine: [string, string];
  const given: unknown[] = [];

  before(async () => {
    sh('ip', 'netns', 'add', ns);
    sh(
      'ip',
      'link',
      'add',
      `sbxl${process.pid}`.slice(0, 15),
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns,
    );
    sh('ip', '-n', ns, 'addr', 'add', '10.215.0.2/24', 'dev', 'eth0');
    sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
    sh('ip', '-n', ns, 'route', 'add', 'default', 'via', '10.215.0.1');
    mac = JSON.parse(sh('ip', '-n', ns, '-j', 'link', 'show', 'eth0'))[0].address;
    pristine = [links(), qdiscs()];
    h = await makeHarness();
    // The fake guest has one NIC, with the MAC QEMU would have given it; it remembers what it was told.
    h.agent.listInterfaces = async () => [{ name: 'eth0', mac, addresses: [], up: false }];
    h.agent.updateInterface = async (_id, iface) => {
      given.push(iface);
      return iface;
    };
    h.agent.updateRoutes = async (_id, routes) => {
      given.push(routes);
      return [...routes];
    };
  });

  after(async () => {
    await h?.cleanup();
    sh('ip', 'netns', 'del', ns);
  });

  it('undoes the wiring when the VM fails to launch', async () => {
    await h.runtime.createSandbox('sb', { network: { mode: 'netns', path } });
    h.world.failures.launch = new HypervisorError('launch', 'injected');
    await assert.rejects(h.runtime.startSandbox('sb'));
    delete h.world.failures.launch;
    assert.equal(h.runtime.getSandbox('sb').state, 'failed');
    assert.deepEqual([links(), qdiscs()], pristine);
  });

  it('records the wiring before the launch and gives the guest the veth’s address and routes', async () => {
    given.length = 0;
    await h.runtime.startSandbox('sb');
    const types = (await h.events()).filter((e) => e.stream === 'sandbox-sb').map((e) => e.type);
    const attached = types.lastIndexOf('SandboxNetworkAttached');
    assert.ok(attached >= 0 && types[attached + 1] === 'VmLaunched', types.join(' '));
    assert.deepEqual(given, [
      { name: 'eth0', addresses: ['10.215.0.2/24'], mtu: 1500, up: true },
      [{ dest: 'default', gateway: '10.215.0.1', device: 'eth0' }],
    ]);
    assert.match(links(), new RegExp(tapName('sb', 0)));
  });

  it('unwires on stop, wires once again on start, and unwires on delete, each unwiring an event', async () => {
    const releases = async () =>
      (await h.events())
        .filter((e) => e.stream === 'sandbox-sb')
        .map((e, i, all) => ({ ...e, next: all[i + 1]?.type }))
        .filter((e) => e.type === 'SandboxNetworkReleased') as unknown as {
        data: { path: string; reason: string; changes: { op: string; kind: string; dev: string }[] };
        next: string | undefined;
      }[];
    const before = (await releases()).length;
    await h.runtime.stopSandbox('sb');
    assert.deepEqual([links(), qdiscs()], pristine);
    const stopped = (await releases()).slice(before);
    assert.equal(stopped.length, 1);
    assert.equal(stopped[0]!.data.reason, 'sandbox stopped');
    assert.equal(stopped[0]!.data.path, path);
    assert.equal(stopped[0]!.next, 'SandboxStopped');
    assert.ok(
      stopped[0]!.data.changes.some((c) => c.op === 'del' && c.kind === 'tap' && c.dev === tapName('sb', 0)),
    );
    await h.runtime.startSandbox('sb');
    assert.equal(links().split('\n').length, pristine[0].split('\n').length + 1);
    await h.runtime.deleteSandbox('sb', { force: true });
    assert.deepEqual([links(), qdiscs()], pristine);
    const deleted = (await releases()).slice(before + 1);
    assert.equal(deleted.length, 1);
    assert.equal(deleted[0]!.data.reason, 'sandbox deleted');
    assert.equal(deleted[0]!.next, 'SandboxDeleted');
  });

  it('releases the wiring at once, as an event, when the VM dies while the daemon runs', async () => {
    await h.runtime.createSandbox('sb2', { network: { mode: 'netns', path } });
    await h.runtime.startSandbox('sb2');
    assert.match(links(), new RegExp(tapName('sb2', 0)));
    h.world.crashVm('sb2');
    const released = await until('SandboxNetworkReleased', 10_000, async () => {
      const events = (await h.events()).filter((e) => e.stream === 'sandbox-sb2');
      return events.some((e) => e.type === 'SandboxNetworkReleased') ? events : undefined;
    });
    const types = released.map((e) => e.type);
    assert.ok(types.indexOf('VmExited') < types.indexOf('SandboxNetworkReleased'), types.join(' '));
    assert.equal(h.runtime.getSandbox('sb2').state, 'lost');
    assert.deepEqual([links(), qdiscs()], pristine);
    const data = released.find((e) => e.type === 'SandboxNetworkReleased')!.data as {
      reason: string;
      changes: { op: string; kind: string; dev: string }[];
    };
    assert.equal(data.reason, 'sandbox lost');
    assert.ok(data.changes.some((c) => c.op === 'del' && c.kind === 'tap' && c.dev === tapName('sb2', 0)));
    await h.runtime.deleteSandbox('sb2', { force: true });
    assert.equal(types.filter((t) => t === 'SandboxNetworkReleased').length, 1);
    assert.deepEqual([links(), qdiscs()], pristine);
  });
});
