// Interfaces added to a sandbox's namespace after it started (a CNI ADD of a second network) and removed again
// (CNI DEL), taken in by sandbox.networkRefresh: a tap, redirects and a hotplugged virtio-net NIC with the veth's
// MAC, the guest given its address; on removal the NIC unplugged and the tap gone. Recorded intent first. Root.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { unmountAllUnder } from '../src/actors/index.js';
import { InvalidArgument, InvalidState } from '../src/errors/index.js';
import { streamOf } from '../src/events/index.js';
import { tapName } from '../src/network/index.js';
import { execIn, openRealWorld, type RealWorld } from './fixtures/hypervisor-world.js';
import { CniBridge, CniNamespace } from './support/cni.js';
import { createHttpdBundle, GUEST_PAGE } from './support/httpd-bundle.js';
import { qemuPidsUsing, until } from './support/vm.js';

const VM_MS = 300_000;
const octet = 10 + ((process.pid + 50) % 200);

async function typesIn(world: RealWorld, sandboxId: string): Promise<{ type: string; data: unknown }[]> {
  const events: { type: string; data: unknown }[] = [];
  for await (const e of world.store.readStream(streamOf.sandbox(sandboxId))) events.push(e);
  return events;
}

/** What the host gets from the guest's httpd at `ip` (undefined while it does not answer). */
async function httpGet(ip: string): Promise<string | undefined> {
  const res = await fetch(`http://${ip}:8080/`, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
  return res?.ok ? res.text() : undefined;
}

describe('interfaces added to and removed from a running sandbox’s namespace', { timeout: 900_000 }, () => {
  let dir: string;
  let world: RealWorld;
  let first: CniBridge;
  let second: CniBridge;
  let netns: CniNamespace;
  let linksWired: string;
  let secondIp: string;
  const sb = 'hot1';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sbx-netns-hot-'));
    first = new CniBridge(`sbxh1${process.pid}`.slice(0, 15), octet, dir);
    second = new CniBridge(`sbxh2${process.pid}`.slice(0, 15), octet, dir, '10.216', []);
    netns = new CniNamespace(`sbxhot${process.pid}`);
    netns.add(first, 'eth0');
    await createHttpdBundle(join(dir, 'web'));
    world = await openRealWorld(join(dir, 'world'));
  });

  after(async () => {
    await world?.close().catch(() => undefined);
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await unmountAllUnder(dir).catch(() => undefined);
    netns?.close();
    first?.remove();
    second?.remove();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a sandbox off any namespace, and one not running, recording nothing', async () => {
    await world.runtime.createSandbox('plain', {});
    await assert.rejects(world.runtime.refreshNetwork('plain'), (err: unknown) => {
      assert.ok(err instanceof InvalidArgument);
      assert.equal(err.details.field, 'id');
      return true;
    });
    await world.runtime.createSandbox(sb, { network: { mode: 'netns', path: netns.path } });
    await assert.rejects(world.runtime.refreshNetwork(sb), InvalidState);
    for (const id of ['plain', sb])
      assert.ok(!(await typesIn(world, id)).some((e) => e.type.startsWith('SandboxNetworkRefresh')));
    await world.runtime.deleteSandbox('plain');
  });

  it('plugs in a NIC for a veth CNI added after start: the guest has its address, the host reaches it', {
    timeout: VM_MS,
  }, async () => {
    await world.runtime.startSandbox(sb);
    await world.runtime.createContainer({ sandboxId: sb, id: 'web', bundle: join(dir, 'web') });
    await world.runtime.startContainer(sb, 'web');
    linksWired = netns.links();
    secondIp = netns.add(second, 'eth1').split('/')[0] as string;
    const view = await world.runtime.refreshNetwork(sb);
    assert.deepEqual(
      view.interfaces?.map((i) => [i.veth, i.tap]),
      [
        ['eth0', tapName(sb, 0)],
        ['eth1', tapName(sb, 1)],
      ],
    );
    const events = await typesIn(world, sb);
    const asked = events.findIndex((e) => e.type === 'SandboxNetworkRefreshRequested');
    const done = events.findIndex((e) => e.type === 'SandboxNetworkRefreshed');
    assert.ok(asked >= 0 && done > asked, 'the intent first, then the outcome');
    const data = events[done]!.data as {
      added: string[];
      removed: string[];
      changes: { op: string; kind: string; dev: string }[];
    };
    assert.deepEqual(data.added, ['eth1']);
    assert.deepEqual(data.removed, []);
    assert.ok(data.changes.some((c) => c.op === 'add' && c.kind === 'tap' && c.dev === tapName(sb, 1)));
    assert.ok(data.changes.some((c) => c.op === 'add' && c.kind === 'filter' && c.dev === 'eth1'));
    const ip = await execIn(world, sb, 'web', 'ip1', ['ip', '-o', '-4', 'addr', 'show']);
    assert.match(ip.out, new RegExp(` inet ${secondIp.replace(/\./g, '\\.')}/24 `));
    const body = await until('the guest answers on its second network', 60_000, () => httpGet(secondIp));
    assert.equal(body, GUEST_PAGE);
    // A second refresh with nothing new changes nothing.
    await world.runtime.refreshNetwork(sb);
    const again = (await typesIn(world, sb)).filter((e) => e.type === 'SandboxNetworkRefreshed').at(-1)!;
    assert.deepEqual((again.data as { changes: unknown[] }).changes, []);
  });

  it('unplugs the NIC of a veth CNI deleted: the tap goes, the guest loses the address', {
    timeout: VM_MS,
  }, async () => {
    netns.del('eth1');
    const view = await world.runtime.refreshNetwork(sb);
    assert.deepEqual(
      view.interfaces?.map((i) => i.veth),
      ['eth0'],
    );
    const last = (await typesIn(world, sb)).filter((e) => e.type === 'SandboxNetworkRefreshed').at(-1)!;
    const data = last.data as { removed: string[]; changes: { op: string; kind: string; dev: string }[] };
    assert.deepEqual(data.removed, ['eth1']);
    assert.ok(data.changes.some((c) => c.op === 'del' && c.kind === 'tap' && c.dev === tapName(sb, 1)));
    assert.equal(netns.links(), linksWired, 'the namespace as it was before eth1 came');
    const ip = await execIn(world, sb, 'web', 'ip2', ['ip', '-o', 'link', 'show']);
    assert.equal(ip.out.trim().split('\n').length, 2, `lo and eth0 only:\n${ip.out}`);
    assert.equal(await httpGet(secondIp), undefined);
    await world.runtime.deleteSandbox(sb, { force: true });
    assert.doesNotMatch(netns.links(), /sbx[0-9a-f]{8}t/, 'no tap of ours left');
    assert.deepEqual(await qemuPidsUsing(dir), []);
  });
});
