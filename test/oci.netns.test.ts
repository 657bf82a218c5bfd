// A bundle whose network namespace has a path (as podman --network ns:PATH or CNI make it): sandboxd-runc
// creates the sandbox in sandboxd's netns mode, so the container sees the namespace's address on eth0. Real
// daemon, real VM, a namespace made with `ip netns add`; then podman on its default network (Debian's podman
// 4.3 with CNI: bridge cni-podman0 + portmap), a published port answering. Run as root.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GUEST_PAGE, httpdArgs } from './support/httpd-bundle.js';
import { assertNothingLeft, type OciWorld, openOciWorld, runc, runcSpecBundle } from './support/oci.js';
import { closePodman, openPodman, type Podman } from './support/oci-podman.js';
import { freePort, until } from './support/vm.js';

const octet = 10 + (process.pid % 200);
const nsIp = `10.215.${octet}.2`;
const ns = `sbxoci${process.pid}`;
const hostVeth = `sbxo${process.pid}`.slice(0, 15);
const sh = (...argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
/** podman's default CNI network's bridge (/etc/cni/net.d/87-podman-bridge.conflist). */
const PODMAN_BRIDGE = 'cni-podman0';
const linkExists = (name: string) => {
  try {
    sh('ip', 'link', 'show', 'dev', name);
    return true;
  } catch {
    return false;
  }
};

async function get(url: string): Promise<string> {
  return until(`${url} answers`, 90_000, async () => {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) }).catch(() => undefined);
    return res?.ok ? res.text() : undefined;
  });
}

describe('sandboxd-runc on a bundle that names a network namespace (real daemon, real VM)', {
  timeout: 600_000,
}, () => {
  let world: OciWorld;
  let podman: Podman | undefined;
  let bridgeWasThere = true;

  before(async () => {
    sh('ip', 'netns', 'add', ns);
    sh('ip', 'link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    sh('ip', 'link', 'set', hostVeth, 'up');
    sh('ip', '-n', ns, 'addr', 'add', `${nsIp}/24`, 'dev', 'eth0');
    sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
    world = await openOciWorld('sbx-ocinet-');
  });

  after(async () => {
    if (world) await closePodman(world, podman).catch(() => undefined);
    await world?.close();
    // CNI leaves its bridge when the last veth goes: take it only if this file made it and nobody uses it.
    if (
      !bridgeWasThere &&
      linkExists(PODMAN_BRIDGE) &&
      !sh('ip', 'link', 'show', 'master', PODMAN_BRIDGE).trim()
    )
      sh('ip', 'link', 'del', PODMAN_BRIDGE);
    try {
      sh('ip', 'netns', 'del', ns);
    } catch {
      // never made
    }
  });

  it("the container's eth0 has the namespace's address; the sandbox is in netns mode", {
    timeout: 300_000,
  }, async () => {
    const bundle = await runcSpecBundle(join(world.dir, 'net'), ['ip', '-o', '-4', 'addr', 'show']);
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8'));
    spec.linux.namespaces = spec.linux.namespaces.map((n: { type: string }) =>
      n.type === 'network' ? { type: 'network', path: `/run/netns/${ns}` } : n,
    );
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
    const created = await runc(world, ['run', '--keep', '--bundle', bundle, 'net']);
    assert.equal(created.code, 0, created.stderr);
    assert.match(
      created.stdout,
      new RegExp(`eth0\\s+inet ${nsIp.replaceAll('.', '\\.')}/24`),
      created.stdout,
    );
    const sandbox = await world.api.call<{ config: { network?: { mode: string; path: string } } }>(
      'sandbox.status',
      { id: 'oci-net' },
    );
    assert.deepEqual(sandbox.config.network, { mode: 'netns', path: `/run/netns/${ns}` });
    assert.equal((await runc(world, ['delete', 'net'])).code, 0);
    await assertNothingLeft(world);
  });

  it("a podman container on podman's default network answers on a published port", {
    timeout: 420_000,
  }, async () => {
    bridgeWasThere = linkExists(PODMAN_BRIDGE);
    podman = await openPodman(world);
    const port = await freePort();
    const run = await podman(
      'run',
      '-d',
      '--name',
      'web',
      '-p',
      `127.0.0.1:${port}:8080`,
      'busybox',
      ...httpdArgs(),
    );
    assert.equal(run.code, 0, run.stderr);
    const inspect = async (format: string) =>
      (await podman!('inspect', '--format', format, 'web')).stdout.trim();
    const ip = await inspect('{{.NetworkSettings.IPAddress}}');
    const netns = await inspect('{{.NetworkSettings.SandboxKey}}');
    assert.match(ip, /^\d+\.\d+\.\d+\.\d+$/, 'podman gave it an address on its network');
    // The VM is on the namespace podman's CNI wired, and the container sees CNI's address as its own.
    const [sandbox] = await world.api.call<{ config: { network?: { mode: string; path: string } } }[]>(
      'sandbox.list',
      {},
    );
    assert.deepEqual(sandbox?.config.network, { mode: 'netns', path: netns });
    const addr = await podman('exec', 'web', 'ip', '-o', '-4', 'addr', 'show', 'eth0');
    assert.match(addr.stdout, new RegExp(`inet ${ip.replaceAll('.', '\\.')}/`), addr.stdout + addr.stderr);
    // Through portmap's DNAT on the host, then the bridge, the veth, our redirect and the tap.
    assert.equal(await get(`http://127.0.0.1:${port}/`), GUEST_PAGE);
    assert.equal(await get(`http://${ip}:8080/`), GUEST_PAGE);
    const rm = await podman('rm', '-f', 'web');
    assert.equal(rm.code, 0, rm.stderr);
    assert.ok(!sh('ip', 'netns', 'list').includes(netns.split('/').pop()!), 'podman’s namespace is gone');
    await assertNothingLeft(world);
  });
});
