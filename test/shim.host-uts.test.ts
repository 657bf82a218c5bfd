// host-uts.ts: a CRI spec's hostname without a UTS namespace (a hostNetwork pod) becomes the VM's, and is
// taken out of the bundle so crun in the guest does not refuse it. No VM: plain files in a temp dir.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { dropSpecHostname, guestHostnameOf, hostnameWithoutUts } from '../src/shim/host-uts.js';

describe("shim host-uts: a hostNetwork pod's hostname", () => {
  it('is the one asked for without a UTS namespace, and only then', () => {
    const ns = (...types: string[]) => ({ linux: { namespaces: types.map((type) => ({ type })) } });
    assert.equal(hostnameWithoutUts({ hostname: 'web-1', ...ns('pid', 'ipc', 'mount') }), 'web-1');
    assert.equal(hostnameWithoutUts({ hostname: 'web-1' }), 'web-1');
    assert.equal(hostnameWithoutUts({ hostname: 'web-1', ...ns('uts', 'network') }), undefined);
    assert.equal(hostnameWithoutUts({ hostname: '', ...ns('pid') }), undefined);
    assert.equal(hostnameWithoutUts(ns('pid')), undefined);
  });

  it('becomes a guest hostname that is one DNS label (a dotted node name gives its first label)', () => {
    assert.equal(guestHostnameOf('node-7'), 'node-7');
    assert.equal(guestHostnameOf('node-7.example.org'), 'node-7');
    assert.equal(guestHostnameOf('-bad'), undefined);
    assert.equal(guestHostnameOf('a'.repeat(64)), undefined);
  });

  it('is removed from config.json, everything else kept, no temp file left', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shim-uts-'));
    try {
      const spec = {
        ociVersion: '1.0.2',
        hostname: 'web-1',
        process: { args: ['/pause'] },
        annotations: { a: 'b' },
      };
      await writeFile(join(dir, 'config.json'), JSON.stringify(spec));
      await dropSpecHostname(dir);
      const after = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
      const { hostname: _, ...rest } = spec;
      assert.deepEqual(after, rest);
      assert.deepEqual(await readdir(dir), ['config.json']);
      assert.equal((await stat(join(dir, 'config.json'))).mode & 0o777, 0o600);
      await assert.rejects(dropSpecHostname(join(dir, 'missing')), { code: 'ENOENT' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
