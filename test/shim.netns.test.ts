// A task whose spec joins a network namespace (CRI's pod sandbox, wired by CNI; `ctr run --with-ns`) gets a
// sandbox on that namespace: the container sees the veth's address as eth0. The namespace is made here as
// CNI's ptp plugin would (ip netns add, a veth, an address, a route), through a real containerd, sandboxd
// and VM. Run as root.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { IMAGE, RUNTIME, type ShimWorld, startShimWorld, VM_MS } from './support/containerd-world.js';

const octet = 10 + (process.pid % 200);
const hostIp = `10.215.${octet}.1`;
const podIp = `10.215.${octet}.2`;
const ns = `sbxshim${process.pid}`;
const nsPath = `/run/netns/${ns}`;
const hostVeth = `sbxs${process.pid}`.slice(0, 15);
const sh = (...argv: string[]) => execFileSync(argv[0] as string, argv.slice(1), { encoding: 'utf8' });

describe('shim: a task on a network namespace', { timeout: 900_000 }, () => {
  let world: ShimWorld;

  before(async () => {
    sh('ip', 'netns', 'add', ns);
    sh('ip', 'link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    sh('ip', 'addr', 'add', `${hostIp}/24`, 'dev', hostVeth);
    sh('ip', 'link', 'set', hostVeth, 'up');
    sh('ip', '-n', ns, 'addr', 'add', `${podIp}/24`, 'dev', 'eth0');
    sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    sh('ip', '-n', ns, 'route', 'add', 'default', 'via', hostIp);
    world = await startShimWorld();
  });

  after(async () => {
    try {
      await world?.stop();
    } finally {
      // Takes the namespace's end of the veth pair, and with it the host's end and any tap left.
      sh('ip', 'netns', 'del', ns);
    }
  });

  it("a CRI pod sandbox's network namespace becomes the VM's: the container sees its address on eth0", {
    timeout: VM_MS,
  }, async () => {
    const r = await world.ctr([
      'run',
      '--rm',
      '--runtime',
      RUNTIME,
      '--annotation',
      'io.kubernetes.cri.container-type=sandbox',
      '--with-ns',
      `network:${nsPath}`,
      IMAGE,
      'pod1',
      'sh',
      '-c',
      'ip -o -4 addr show eth0; ip route show default',
    ]);
    const why = `${r.stderr}\n--- shim log ---\n${await world.shimLog()}`;
    assert.equal(r.code, 0, why);
    assert.match(r.stdout, new RegExp(`eth0\\s+inet ${podIp.replaceAll('.', '\\.')}/24`), why);
    assert.match(r.stdout, new RegExp(`default via ${hostIp.replaceAll('.', '\\.')}`), why);
  });

  it('a spec without a namespace path keeps the VM off the network (loopback only)', {
    timeout: VM_MS,
  }, async () => {
    const r = await world.ctr([
      'run',
      '--rm',
      '--runtime',
      RUNTIME,
      IMAGE,
      'plain1',
      'sh',
      '-c',
      'ls /sys/class/net',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.split(/\s+/).filter(Boolean), ['lo']);
  });
});
