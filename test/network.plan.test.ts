// Reading a namespace from iproute2's JSON and planning its wiring, without running anything.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgument } from '../src/errors/index.js';
import {
  FILTER_PREF,
  isTapOf,
  type NetnsState,
  parseIngressFilters,
  parseIngressQdiscs,
  parseLinks,
  parseRoutes,
  planAttach,
  planDetach,
  tapName,
} from '../src/network/index.js';

// Recorded from iproute2 6.1 in a namespace wired as CNI's ptp plugin would (trimmed of unused keys).
const ADDR = JSON.stringify([
  {
    ifindex: 1,
    ifname: 'lo',
    flags: ['LOOPBACK', 'UP', 'LOWER_UP'],
    mtu: 65536,
    link_type: 'loopback',
    address: '00:00:00:00:00:00',
    addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }],
  },
  {
    ifindex: 2,
    link_index: 5,
    ifname: 'eth0',
    flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
    mtu: 1450,
    link_type: 'ether',
    address: 'ba:78:82:ea:ae:6c',
    linkinfo: { info_kind: 'veth' },
    addr_info: [
      { family: 'inet', local: '10.77.0.2', prefixlen: 24, scope: 'global' },
      { family: 'inet6', local: 'fd00:77::2', prefixlen: 64, scope: 'global' },
      { family: 'inet6', local: 'fe80::b878:82ff:feea:ae6c', prefixlen: 64, scope: 'link' },
    ],
  },
]);
const ROUTES4 = JSON.stringify([
  { dst: 'default', gateway: '10.77.0.1', dev: 'eth0' },
  { dst: '10.77.0.0/24', dev: 'eth0', protocol: 'kernel', scope: 'link', prefsrc: '10.77.0.2' },
  { dst: '10.99.0.0/16', gateway: '10.77.0.1', dev: 'eth0' },
]);
const ROUTES6 = JSON.stringify([
  { dst: 'fd00:77::/64', dev: 'eth0', protocol: 'kernel', metric: 256 },
  { dst: 'fe80::/64', dev: 'eth0', protocol: 'kernel', metric: 256 },
  { dst: 'default', gateway: 'fd00:77::1', dev: 'eth0', metric: 1024 },
]);
const FILTERS = (to: string) =>
  JSON.stringify([
    { parent: 'ffff:', protocol: 'all', pref: FILTER_PREF, kind: 'u32', chain: 0 },
    { parent: 'ffff:', protocol: 'all', pref: FILTER_PREF, kind: 'u32', chain: 0, options: { fh: '800:' } },
    {
      parent: 'ffff:',
      protocol: 'all',
      pref: FILTER_PREF,
      kind: 'u32',
      chain: 0,
      options: { fh: '800::800', actions: [{ order: 1, kind: 'mirred', to_dev: to }] },
    },
  ]);

const cni: NetnsState = { links: parseLinks(ADDR), routes: parseRoutes(ROUTES4, 4), ingress: {} };

describe('reading a network namespace from iproute2 JSON', () => {
  it('keeps each link’s MAC, MTU and global addresses, not link-local ones', () => {
    const eth0 = parseLinks(ADDR).find((l) => l.name === 'eth0');
    assert.deepEqual(eth0, {
      name: 'eth0',
      ifindex: 2,
      mac: 'ba:78:82:ea:ae:6c',
      mtu: 1450,
      txqlen: 0,
      kind: 'veth',
      linkType: 'ether',
      addresses: ['10.77.0.2/24', 'fd00:77::2/64'],
      up: true,
    });
  });

  it('keeps the routes the guest needs and leaves out the kernel’s connected and link-local ones', () => {
    assert.deepEqual(parseRoutes(ROUTES4, 4), [
      { dest: 'default', gateway: '10.77.0.1', device: 'eth0', family: 4 },
      { dest: '10.99.0.0/16', gateway: '10.77.0.1', device: 'eth0', family: 4 },
    ]);
    assert.deepEqual(parseRoutes(ROUTES6, 6), [
      { dest: 'default', gateway: 'fd00:77::1', device: 'eth0', family: 6 },
    ]);
    assert.deepEqual(parseRoutes('', 6), []);
  });

  it('finds ingress qdiscs and the device a filter redirects to', () => {
    const qdiscs = JSON.stringify([
      { kind: 'noqueue', handle: '0:', dev: 'lo', root: true },
      { kind: 'ingress', handle: 'ffff:', dev: 'eth0', parent: 'ffff:fff1' },
    ]);
    assert.deepEqual(parseIngressQdiscs(qdiscs), ['eth0']);
    assert.deepEqual(parseIngressFilters(FILTERS('tapx')), [{ pref: FILTER_PREF, redirectTo: 'tapx' }]);
  });
});

describe('planning the wiring of a sandbox into a namespace', () => {
  it('names taps from the sandbox id alone, short enough for IFNAMSIZ', () => {
    assert.equal(tapName('web', 0), tapName('web', 0));
    assert.notEqual(tapName('web', 0), tapName('db', 0));
    assert.ok(tapName('a'.repeat(64), 999).length <= 15);
    assert.ok(isTapOf('web', tapName('web', 3)));
    assert.ok(!isTapOf('db', tapName('web', 3)));
    assert.ok(!isTapOf('web', 'eth0'));
  });

  it('makes a tap per veth and redirects both ways, with the veth’s MAC, MTU and addresses', () => {
    const tap = tapName('sb', 0);
    const { wiring, commands } = planAttach(cni, 'sb', '/run/netns/x');
    assert.deepEqual(wiring.links, [
      {
        veth: 'eth0',
        tap,
        mac: 'ba:78:82:ea:ae:6c',
        mtu: 1450,
        addresses: ['10.77.0.2/24', 'fd00:77::2/64'],
      },
    ]);
    assert.equal(wiring.routes.length, 2);
    const redirect = (from: string, to: string) =>
      `tc filter add dev ${from} parent ffff: pref ${FILTER_PREF} protocol all u32 match u8 0 0 action mirred egress redirect dev ${to}`;
    assert.deepEqual(
      commands.map((c) => c.argv.join(' ')),
      [
        `ip tuntap add dev ${tap} mode tap`,
        `ip link set dev ${tap} mtu 1450 up`,
        'tc qdisc add dev eth0 ingress',
        'ip link set dev eth0 txqueuelen 0',
        redirect('eth0', tap),
        `tc qdisc add dev ${tap} ingress`,
        redirect(tap, 'eth0'),
      ],
    );
  });

  it('puts back a veth’s txqueuelen of 0 after its ingress qdisc, and leaves any other alone', () => {
    const zero = planAttach(cni, 'sb', '/run/netns/x').commands.map((c) => c.argv.join(' '));
    assert.ok(zero.includes('ip link set dev eth0 txqueuelen 0'));
    const queued: NetnsState = { ...cni, links: cni.links.map((l) => ({ ...l, txqlen: 1000 })) };
    const kept = planAttach(queued, 'sb', '/run/netns/x').commands.map((c) => c.argv.join(' '));
    assert.ok(!kept.some((c) => c.includes('txqueuelen')), kept.join('\n'));
  });

  it('plans nothing new when the wiring is already there (a retried start, a recovery)', () => {
    const tap = tapName('sb', 0);
    const wired: NetnsState = {
      ...cni,
      links: [
        ...cni.links,
        { ...cni.links[1]!, name: tap, ifindex: 3, kind: 'tun', mac: '92:a5:4d:58:47:8c' },
      ],
      ingress: { eth0: parseIngressFilters(FILTERS(tap)), [tap]: parseIngressFilters(FILTERS('eth0')) },
    };
    const { wiring, commands } = planAttach(wired, 'sb', '/run/netns/x');
    assert.deepEqual(
      wiring.links.map((l) => l.veth),
      ['eth0'],
      'the tap itself is not wired',
    );
    assert.deepEqual(
      commands.map((c) => c.step),
      ['ip link set'],
    );
  });

  it('refuses a namespace without an Ethernet link, and a veth already redirected to another tap', () => {
    const lonely: NetnsState = { links: [cni.links[0]!], routes: [], ingress: {} };
    assert.throws(
      () => planAttach(lonely, 'sb', '/run/netns/x'),
      (err: unknown) => err instanceof InvalidArgument && err.field === 'config.network.path',
    );
    const taken: NetnsState = {
      ...cni,
      ingress: { eth0: parseIngressFilters(FILTERS(tapName('other', 0))) },
    };
    assert.throws(
      () => planAttach(taken, 'sb', '/run/netns/x'),
      (err: unknown) =>
        err instanceof InvalidArgument &&
        err.field === 'config.network.path' &&
        /already redirected/.test(err.message),
    );
  });

  it('undoes only what is ours: our filters (with the qdisc when it holds nothing else) and our taps', () => {
    const tap = tapName('sb', 0);
    const wired: NetnsState = {
      ...cni,
      links: [...cni.links, { ...cni.links[1]!, name: tap, ifindex: 3, kind: 'tun' }],
      ingress: { eth0: parseIngressFilters(FILTERS(tap)), [tap]: parseIngressFilters(FILTERS('eth0')) },
    };
    assert.deepEqual(
      planDetach(wired, 'sb').map((c) => c.argv.join(' ')),
      ['tc qdisc del dev eth0 ingress', `ip link del dev ${tap}`],
    );
    const shared: NetnsState = {
      ...wired,
      ingress: { ...wired.ingress, eth0: [...(wired.ingress.eth0 ?? []), { pref: 49152 }] },
    };
    assert.deepEqual(
      planDetach(shared, 'sb').map((c) => c.argv.join(' ')),
      [`tc filter del dev eth0 parent ffff: pref ${FILTER_PREF}`, `ip link del dev ${tap}`],
    );
    assert.deepEqual(planDetach(wired, 'another'), []);
    assert.deepEqual(planDetach(cni, 'sb'), []);
  });
});
