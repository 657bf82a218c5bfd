// Planning recovery and refresh of a sandbox's wiring from a namespace's state, without running anything:
// a repair makes only what is missing of the recorded links, a refresh adds veths not recorded and removes
// recorded ones gone, and every command says what it changes (what the events record).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  changesOf,
  FILTER_PREF,
  type NetnsLink,
  type NetnsState,
  nextTapIndex,
  planRefresh,
  planRemoval,
  planRepair,
  tapName,
  type WiredLink,
} from '../src/network/index.js';

const link = (name: string, ifindex: number, mac: string, kind = 'veth'): NetnsLink => ({
  name,
  ifindex,
  mac,
  mtu: 1500,
  txqlen: kind === 'tun' ? 1000 : 0,
  kind,
  linkType: 'ether',
  addresses: kind === 'tun' ? [] : [`10.1.${ifindex}.2/24`],
  up: true,
});
const t0 = tapName('sb', 0);
const t1 = tapName('sb', 1);
const eth0 = link('eth0', 2, '02:00:00:00:00:02');
const eth1 = link('eth1', 4, '02:00:00:00:00:04');
const wired0: WiredLink = { veth: 'eth0', tap: t0, mac: eth0.mac, mtu: 1500, addresses: eth0.addresses };
const ours = (to: string) => [{ pref: FILTER_PREF, redirectTo: to }];
/** eth0 wired to t0 both ways, as an attach leaves it. */
const whole: NetnsState = {
  links: [eth0, link(t0, 3, '02:aa:00:00:00:03', 'tun')],
  routes: [],
  ingress: { eth0: ours(t0), [t0]: ours('eth0') },
};

describe('repairing a running sandbox’s wiring after a restart', () => {
  it('plans no change when everything recorded is there', () => {
    assert.deepEqual(changesOf(planRepair(whole, [wired0], '/run/netns/x')), []);
  });

  it('re-makes a removed filter only, keeping the qdisc and the tap', () => {
    const cut: NetnsState = { ...whole, ingress: { eth0: [], [t0]: ours('eth0') } };
    const commands = planRepair(cut, [wired0], '/run/netns/x');
    assert.deepEqual(changesOf(commands), [{ op: 'add', kind: 'filter', dev: 'eth0', to: t0 }]);
  });

  it('re-makes a removed tap with its qdisc and both redirects', () => {
    const noTap: NetnsState = { links: [eth0], routes: [], ingress: { eth0: [] } };
    assert.deepEqual(changesOf(planRepair(noTap, [wired0], '/run/netns/x')), [
      { op: 'add', kind: 'tap', dev: t0 },
      { op: 'add', kind: 'filter', dev: 'eth0', to: t0 },
      { op: 'add', kind: 'qdisc', dev: t0 },
      { op: 'add', kind: 'filter', dev: t0, to: 'eth0' },
    ]);
  });

  it('leaves out a recorded link whose veth is gone (a refresh unplugs it)', () => {
    const gone: NetnsState = { links: [], routes: [], ingress: {} };
    assert.deepEqual(planRepair(gone, [wired0], '/run/netns/x'), []);
  });
});

describe('refreshing the wiring of a running sandbox', () => {
  it('adds a veth not recorded, with the next tap name, and keeps the recorded one', () => {
    const grown: NetnsState = { ...whole, links: [...whole.links, eth1] };
    const plan = planRefresh(grown, 'sb', [wired0]);
    assert.deepEqual(plan.kept, [wired0]);
    assert.deepEqual(plan.removed, []);
    assert.deepEqual(plan.added, [
      { veth: 'eth1', tap: t1, mac: eth1.mac, mtu: 1500, addresses: eth1.addresses },
    ]);
  });

  it('removes a recorded veth gone, and one back with another MAC is a new link on a new tap', () => {
    const gone = planRefresh({ ...whole, links: whole.links.slice(1) }, 'sb', [wired0]);
    assert.deepEqual(gone.removed, [wired0]);
    assert.deepEqual(gone.added, []);
    const renewed = planRefresh(
      { ...whole, links: [{ ...eth0, mac: '02:00:00:00:00:99' }, whole.links[1]!] },
      'sb',
      [wired0],
    );
    assert.deepEqual(renewed.removed, [wired0]);
    assert.deepEqual(
      renewed.added.map((l) => [l.veth, l.tap, l.mac]),
      [['eth0', t1, '02:00:00:00:00:99']],
    );
  });

  it('numbers taps after the highest recorded one, so names are not reused while links come and go', () => {
    assert.equal(nextTapIndex([]), 0);
    assert.equal(nextTapIndex([wired0, { ...wired0, tap: tapName('sb', 4) }]), 5);
  });

  it('removes a tap with its own filter, and the redirect to it on a veth still there', () => {
    const commands = planRemoval(whole, (tap) => tap === t0);
    assert.deepEqual(
      commands.map((c) => c.argv.join(' ')),
      ['tc qdisc del dev eth0 ingress', `ip link del dev ${t0}`],
    );
    assert.deepEqual(changesOf(commands), [
      { op: 'del', kind: 'filter', dev: 'eth0', to: t0 },
      { op: 'del', kind: 'qdisc', dev: 'eth0' },
      { op: 'del', kind: 'filter', dev: t0, to: 'eth0' },
      { op: 'del', kind: 'tap', dev: t0 },
    ]);
    assert.deepEqual(
      planRemoval(whole, () => false),
      [],
    );
  });
});
