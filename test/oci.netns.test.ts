// A bundle whose network namespace has a path (as podman --network ns:PATH or CNI make it): sandboxd-runc
// creates the sandbox in sandboxd's netns mode, so the container sees the namespace's address on eth0. Real
// daemon, real VM, a namespace made with `ip netns add`. Run as root.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertNothingLeft, type OciWorld, openOciWorld, runc, runcSpecBundle } from './support/oci.js';

const octet = 10 + (process.pid % 200);
const nsIp = `10.215.${octet}.2`;
const ns = `sbxoci${process.pid}`;
const hostVeth = `sbxo${process.pid}`.slice(0, 15);
const sh = (...argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });

describe('sandboxd-runc on a bundle that names a network namespace (real daemon, real VM)', {
  timeout: 600_000,
}, () => {
  let world: OciWorld;

  before(async () => {
    sh('ip', 'netns', 'add', ns);
    sh('ip', 'link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    sh('ip', 'link', 'set', hostVeth, 'up');
    sh('ip', '-n', ns, 'addr', 'add', `${nsIp}/24`, 'dev', 'eth0');
    sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up');
    world = await openOciWorld('sbx-ocinet-');
  });

  after(async () => {
    await world?.close();
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
});
