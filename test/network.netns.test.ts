// Wiring a sandbox into a real network namespace (as root): taps and tc redirects made, kept on a retry,
// and removed down to what was there before; bad paths refused, naming the field.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { InvalidArgument } from '../src/errors/index.js';
import { attachNetns, checkNetnsPath, detachNetns, readNetns, tapName } from '../src/network/index.js';

const logger = pino({ level: 'silent' });
const ns = `sbxtest${process.pid}`;
const path = `/run/netns/${ns}`;
const hostVeth = `sbxh${process.pid}`.slice(0, 15);
const sh = (...argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
const links = () => sh('ip', '-n', ns, '-o', 'link', 'show').replace(/\\.*$/gm, '').trim();
const qdiscs = () => sh('tc', '-n', ns, 'qdisc', 'show').trim();
const isField = (err: unknown) => err instanceof InvalidArgument && err.field === 'config.network.path';

describe('wiring a sandbox into a network namespace', () => {
  let linksBefore: string;
  let qdiscsBefore: string;

  before(() => {
    sh('ip', 'netns', 'add', ns);
    // txqueuelen 0, as CNI's plugins make their veths (the kernel raises it when a qdisc is attached).
    sh('ip', 'link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns, 'txqueuelen', '0');
    sh('ip', '-n', ns, 'link', 'set', 'eth0', 'mtu', '1400', 'up');
    sh('ip', '-n', ns, 'addr', 'add', '10.213.7.2/24', 'dev', 'eth0');
    sh('ip', '-n', ns, 'route', 'add', 'default', 'via', '10.213.7.1');
    linksBefore = links();
    qdiscsBefore = qdiscs();
  });

  // Deleting the namespace takes its end of the veth pair, and with it ours.
  after(() => {
    try {
      sh('ip', 'netns', 'del', ns);
    } catch {
      // already gone
    }
  });

  it('reads the veth, its address and the default route', async () => {
    const state = await readNetns(path);
    const eth0 = state.links.find((l) => l.name === 'eth0');
    assert.equal(eth0?.mtu, 1400);
    assert.deepEqual(eth0?.addresses, ['10.213.7.2/24']);
    assert.deepEqual(state.routes, [{ dest: 'default', gateway: '10.213.7.1', device: 'eth0', family: 4 }]);
  });

  it('makes a tap and redirects both ways, and a second attach changes nothing', async () => {
    const tap = tapName('sb-one', 0);
    const wiring = await attachNetns(path, 'sb-one', logger);
    assert.deepEqual(
      wiring.links.map((l) => [l.veth, l.tap, l.mtu]),
      [['eth0', tap, 1400]],
    );
    const state = await readNetns(path);
    assert.equal(state.links.find((l) => l.name === tap)?.mtu, 1400);
    assert.equal(state.links.find((l) => l.name === tap)?.up, true);
    assert.deepEqual(
      state.ingress.eth0?.map((f) => f.redirectTo),
      [tap],
    );
    assert.deepEqual(
      state.ingress[tap]?.map((f) => f.redirectTo),
      ['eth0'],
    );
    const filters = sh('tc', '-n', ns, 'filter', 'show', 'dev', 'eth0', 'ingress');
    const again = await attachNetns(path, 'sb-one', logger);
    assert.deepEqual(again, wiring);
    assert.equal(
      sh('tc', '-n', ns, 'filter', 'show', 'dev', 'eth0', 'ingress'),
      filters,
      'no filter doubled',
    );
    assert.equal(links().split('\n').length, linksBefore.split('\n').length + 1, 'one tap, not two');
    assert.equal(
      state.links.find((l) => l.name === 'eth0')?.txqlen,
      0,
      'the veth’s txqueuelen kept while wired',
    );
  });

  it('refuses a second sandbox on a veth already redirected, changing nothing', async () => {
    const before = [links(), qdiscs()];
    await assert.rejects(attachNetns(path, 'sb-two', logger), isField);
    assert.deepEqual([links(), qdiscs()], before);
  });

  it('detaches down to what was there before, and detaching again is a no-op', async () => {
    await detachNetns(path, 'sb-two', logger);
    assert.notEqual(links(), linksBefore, 'another sandbox’s detach leaves sb-one’s tap');
    await detachNetns(path, 'sb-one', logger);
    assert.equal(links(), linksBefore);
    assert.equal(qdiscs(), qdiscsBefore);
    await detachNetns(path, 'sb-one', logger);
    await detachNetns('/run/netns/sbx-no-such-ns', 'sb-one', logger);
    assert.equal(links(), linksBefore);
  });

  it('refuses paths that are not another network namespace, naming config.network.path', async () => {
    await assert.rejects(checkNetnsPath('relative/ns'), isField);
    await assert.rejects(checkNetnsPath('/run/netns/sbx-no-such-ns'), isField);
    await assert.rejects(checkNetnsPath('/etc/hostname'), isField);
    await assert.rejects(checkNetnsPath('/proc/self/ns/net'), isField);
    await checkNetnsPath(path);
  });
});
