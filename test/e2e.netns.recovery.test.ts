// Recovery of netns wiring after the daemon is killed -9: two sandboxes on one CNI bridge keep their taps and
// filters (each exactly once), a filter removed while the daemon was down is made again (SandboxNetworkRepaired),
// they still reach each other (TCP); a sandbox whose QEMU died while the daemon was down has its taps taken out
// (SandboxNetworkReleased) and its namespace is back to what CNI made; so does one whose QEMU is killed while the
// daemon runs, without a restart. Run as root.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { unmountAllUnder } from '../src/actors/index.js';
import { streamOf } from '../src/events/index.js';
import { FILTER_PREF, tapName } from '../src/network/index.js';
import { execIn, openRealWorld, type RealWorld } from './fixtures/hypervisor-world.js';
import { CniBridge, CniNamespace, sh } from './support/cni.js';
import { createHttpdBundle, GUEST_PAGE } from './support/httpd-bundle.js';
import { exited, spawnUntil } from './support/processes.js';
import { qemuPidsUsing, until } from './support/vm.js';

const VM_MS = 420_000;
const octet = 10 + ((process.pid + 100) % 200);

/** How many of our redirect filters `dev`'s ingress has in namespace `ns` (from tc's JSON). */
function ourFilters(ns: string, dev: string): number {
  const json = JSON.parse(sh('tc', '-n', ns, '-j', 'filter', 'show', 'dev', dev, 'ingress') || '[]') as {
    pref?: number;
    options?: { actions?: { to_dev?: string }[] };
  }[];
  return json.filter((f) => f.pref === FILTER_PREF && f.options?.actions?.some((a) => a.to_dev)).length;
}

async function eventsOf(world: RealWorld, sandboxId: string) {
  const events: { type: string; data: unknown }[] = [];
  for await (const e of world.store.readStream(streamOf.sandbox(sandboxId))) events.push(e);
  return events;
}

describe('netns wiring after the daemon is killed -9', { timeout: 1_500_000 }, () => {
  let dir: string;
  let worldDir: string;
  let world: RealWorld | undefined;
  let bridge: CniBridge;
  const nets: Record<
    string,
    { ns: CniNamespace; ip: string; links: string; filters: string; qdiscs: string }
  > = {};
  let pids: Record<string, number>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-netns-rec-'));
    worldDir = join(dir, 'world');
    bridge = new CniBridge(`sbxrb${process.pid}`.slice(0, 15), octet, dir);
    for (const id of ['a', 'b']) {
      const ns = new CniNamespace(`sbxrec${id}${process.pid}`);
      const ip = ns.add(bridge).split('/')[0] as string;
      nets[id] = { ns, ip, links: ns.links(), filters: ns.filters(), qdiscs: ns.qdiscs() };
    }
    await createHttpdBundle(join(dir, 'app'));
  });

  after(async () => {
    await world?.close().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await unmountAllUnder(dir).catch(() => undefined);
    for (const n of Object.values(nets)) n.ns.close();
    bridge?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps both sandboxes’ taps and filters once each, re-makes a removed one, and they still reach each other', {
    timeout: VM_MS,
  }, async () => {
    const tmp = join(dir, 'tmp');
    await mkdir(tmp);
    const { child, output } = await spawnUntil(
      new URL('./fixtures/netns-daemon.js', import.meta.url).pathname,
      [worldDir, join(dir, 'app'), `a=${nets.a!.ns.path}`, `b=${nets.b!.ns.path}`],
      /"ready":true.*\n/,
      // Its relay sockets go under our temp dir: a daemon killed -9 cannot clean up after itself.
      { env: { TMPDIR: tmp }, timeoutMs: VM_MS - 60_000 },
    );
    pids = (
      JSON.parse(
        output()
          .split('\n')
          .find((l) => l.includes('"ready"')) as string,
      ) as { pids: typeof pids }
    ).pids;
    child.kill('SIGKILL');
    await exited(child);
    // While the daemon is down, someone removes a's veth → tap redirect: a receives nothing until it is back.
    const nsA = nets.a!.ns.name;
    sh('tc', '-n', nsA, 'filter', 'del', 'dev', 'eth0', 'parent', 'ffff:', 'pref', String(FILTER_PREF));
    assert.equal(ourFilters(nsA, 'eth0'), 0);

    world = await openRealWorld(worldDir);
    assert.deepEqual([...world.runtime.recovery.reattached].sort(), ['a', 'b']);
    for (const id of ['a', 'b']) {
      const ns = nets[id]!.ns.name;
      assert.equal(ourFilters(ns, 'eth0'), 1, `${id}: one redirect on eth0`);
      assert.equal(ourFilters(ns, tapName(id, 0)), 1, `${id}: one redirect on its tap`);
      assert.equal(
        sh('ip', '-n', ns, '-o', 'link', 'show')
          .split('\n')
          .filter((l) => l.includes(tapName(id, 0))).length,
        1,
        `${id}: one tap`,
      );
    }
    const repaired = (await eventsOf(world, 'a')).filter((e) => e.type === 'SandboxNetworkRepaired');
    assert.deepEqual(
      repaired.map((e) => e.data),
      [{ path: nets.a!.ns.path, changes: [{ op: 'add', kind: 'filter', dev: 'eth0', to: tapName('a', 0) }] }],
    );
    assert.deepEqual(
      (await eventsOf(world, 'b')).filter((e) => e.type.startsWith('SandboxNetworkRe')),
      [],
      'nothing of b was missing',
    );
    for (const [from, to] of [
      ['a', 'b'],
      ['b', 'a'],
    ] as const) {
      // TCP both ways (the bundle has no CAP_NET_RAW for ping): a's veth → tap redirect is the one re-made.
      const got = await until(`${from} reaches ${to}'s httpd`, 60_000, async () => {
        const r = await execIn(world!, from, 'app', `get-${to}-${Date.now()}`, [
          // busybox wget's own -T crashes (SIGSEGV) in this guest: timeout(1) bounds it instead.
          'timeout',
          '10',
          'wget',
          '-qO-',
          `http://${nets[to]!.ip}:8080/`,
        ]);
        return r.status.exitCode === 0 ? r.out : undefined;
      });
      assert.equal(got, GUEST_PAGE);
    }
  });

  it('takes the taps of a sandbox whose VM died while the daemon was down out of its namespace', {
    timeout: VM_MS,
  }, async () => {
    await world!.close();
    world = undefined;
    process.kill(pids.b!, 'SIGKILL');
    await until('b’s QEMU is gone', 30_000, async () =>
      (await qemuPidsUsing(join(worldDir, 'state', 'sandboxes', 'b'))).length === 0 ? true : undefined,
    );
    world = await openRealWorld(worldDir);
    assert.deepEqual(world.runtime.recovery.lost, ['b']);
    assert.equal(world.runtime.getSandbox('b').state, 'lost');
    const b = nets.b!;
    assert.equal(b.ns.links(), b.links, 'b’s namespace has CNI’s links only');
    assert.equal(b.ns.filters(), b.filters);
    assert.equal(b.ns.qdiscs(), b.qdiscs);
    const released = (await eventsOf(world, 'b')).filter((e) => e.type === 'SandboxNetworkReleased');
    assert.equal(released.length, 1);
    const data = released[0]!.data as {
      path: string;
      reason: string;
      changes: { op: string; kind: string; dev: string }[];
    };
    assert.equal(data.path, b.ns.path);
    assert.equal(data.reason, 'sandbox lost');
    assert.ok(data.changes.some((c) => c.op === 'del' && c.kind === 'tap' && c.dev === tapName('b', 0)));
    assert.ok(data.changes.some((c) => c.op === 'del' && c.kind === 'filter' && c.dev === 'eth0'));
    // a was left alone: nothing repaired this time.
    assert.equal((await eventsOf(world, 'a')).filter((e) => e.type === 'SandboxNetworkRepaired').length, 1);
  });

  it('takes the taps of a VM killed -9 while the daemon runs out of its namespace at once', {
    timeout: VM_MS,
  }, async () => {
    const rt = world!.runtime;
    const a = nets.a!;
    assert.notEqual(a.ns.links(), a.links, 'a is wired (its tap is there)');
    process.kill(pids.a!, 'SIGKILL');
    await until('a is lost', 60_000, async () => (rt.getSandbox('a').state === 'lost' ? true : undefined));
    const released = await until('a’s wiring released', 30_000, async () => {
      const events = (await eventsOf(world!, 'a')).filter((e) => e.type === 'SandboxNetworkReleased');
      return events.length > 0 ? events : undefined;
    });
    assert.equal(released.length, 1);
    const types = (await eventsOf(world!, 'a')).map((e) => e.type);
    assert.ok(types.indexOf('VmExited') < types.indexOf('SandboxNetworkReleased'), types.join(' '));
    const data = released[0]!.data as {
      path: string;
      reason: string;
      changes: { op: string; kind: string; dev: string; to?: string }[];
    };
    assert.equal(data.path, a.ns.path);
    assert.equal(data.reason, 'sandbox lost');
    const tap = tapName('a', 0);
    assert.ok(data.changes.some((c) => c.op === 'del' && c.kind === 'tap' && c.dev === tap));
    assert.ok(
      data.changes.some((c) => c.op === 'del' && c.kind === 'filter' && c.dev === 'eth0' && c.to === tap),
    );
    assert.ok(data.changes.every((c) => c.op === 'del'));
    // Back to what CNI made, while the daemon still runs: no restart, no delete needed.
    assert.equal(a.ns.links(), a.links, 'a’s namespace has CNI’s links only');
    assert.equal(a.ns.filters(), a.filters);
    assert.equal(a.ns.qdiscs(), a.qdiscs);
    // The delete after finds nothing of a left and records no second release.
    for (const id of ['a', 'b']) await rt.deleteSandbox(id, { force: true });
    assert.equal(a.ns.links(), a.links);
    assert.equal(a.ns.filters(), a.filters);
    assert.deepEqual(await qemuPidsUsing(dir), []);
  });
});
