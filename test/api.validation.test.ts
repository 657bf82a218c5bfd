// Params validation: ids, paths, bundles and types are refused with -32602 naming the field, and nothing happens.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import type { ApiClient } from '../src/api/index.js';
import { type Harness, refused, withApi, writeMinimalBundle } from './support/api-harness.js';

describe('api validation', () => {
  let h: Harness;
  let c: ApiClient;
  let bundle: string;
  withApi((api) => {
    ({ h, c } = api);
  });
  before(async () => {
    bundle = await writeMinimalBundle(join(h.dir, 'bundle'));
    await c.call('sandbox.create', { id: 'sb' });
    await c.call('sandbox.start', { id: 'sb' });
  });

  it('refuses ids that do not match the id pattern, naming the field', async () => {
    const seq = h.store.lastSeq();
    for (const id of ['', '-lead', 'a/b', 'a b', '../x', 'x'.repeat(65), 'ümlaut']) {
      const e = await refused(c.call('sandbox.create', { id }));
      assert.equal(e.rpcCode, -32602, id);
      assert.equal(e.data.code, 'InvalidArgument');
      assert.equal(e.data.field, 'id');
    }
    assert.equal(h.store.lastSeq(), seq, 'nothing was recorded');
  });

  it('accepts an id of 64 characters with dots, dashes and underscores', async () => {
    const id = `a${'b_.-'.repeat(15)}cde`;
    assert.equal(id.length, 64);
    const v = (await c.call('sandbox.create', { id })) as { id: string };
    assert.equal(v.id, id);
  });

  it('says a missing required field "is required", naming it, whatever its type', async () => {
    const cases: [string, unknown, string][] = [
      ['sandbox.start', {}, 'id'],
      ['sandbox.start', undefined, 'id'],
      ['container.start', { sandboxId: 'sb' }, 'id'],
      ['container.create', { sandboxId: 'sb', id: 'c9' }, 'bundle'],
      ['exec.kill', { sandboxId: 'sb', containerId: 'c1', signal: 'TERM' }, 'execId'],
      ['exec.create', { sandboxId: 'sb', containerId: 'c1', execId: 'e1' }, 'process'],
      ['events.unsubscribe', {}, 'subscription'],
      ['guest.copyFile', { sandboxId: 'sb', path: '/tmp/x' }, 'data'],
    ];
    for (const [method, params, field] of cases) {
      const e = await refused(c.call(method, params));
      assert.equal(e.data.field, field, method);
      assert.equal(e.message, `invalid params: ${field}: is required`, method);
    }
    // A field that is there but wrong still says what is wrong with it.
    const wrong = await refused(c.call('sandbox.start', { id: 7 }));
    assert.equal(wrong.message, 'invalid params: id: must be a string');
  });

  it('names a field of the wrong type, nested ones by dotted path', async () => {
    const e1 = await refused(c.call('sandbox.create', { id: 'typed', config: { vcpus: 'two' } }));
    assert.equal(e1.data.field, 'config.vcpus');
    const e2 = await refused(
      c.call('container.create', { sandboxId: 'sb', id: 'c1', bundle, process: { args: ['sh', 3] } }),
    );
    assert.equal(e2.data.field, 'process.args.1');
    const e3 = await refused(c.call('sandbox.stop', { id: 'sb', timeoutMs: -1 }));
    assert.equal(e3.data.field, 'timeoutMs');
  });

  it('refuses hotplug limits below the boot size, naming the limit, and creates nothing', async () => {
    const cpus = await refused(c.call('sandbox.create', { id: 'lim', config: { vcpus: 2, maxVcpus: 1 } }));
    assert.equal(cpus.data.field, 'config.maxVcpus');
    assert.match(cpus.message, /at least vcpus \(2\)/);
    const memory = await refused(
      c.call('sandbox.create', { id: 'lim', config: { memoryMiB: 1024, maxMemoryMiB: 512 } }),
    );
    assert.equal(memory.data.field, 'config.maxMemoryMiB');
    await refused(c.call('sandbox.status', { id: 'lim' }));
  });

  it('refuses forwarded ports without the user network, and a host port forwarded twice', async () => {
    const noNetwork = await refused(
      c.call('sandbox.create', { id: 'np', config: { ports: [{ hostPort: 8080, guestPort: 80 }] } }),
    );
    assert.equal(noNetwork.data.field, 'config.ports');
    const twice = await refused(
      c.call('sandbox.create', {
        id: 'np',
        config: {
          network: 'user',
          ports: [
            { hostPort: 8080, guestPort: 80 },
            { hostPort: 8080, guestPort: 81, protocol: 'tcp', hostAddress: '127.0.0.1' },
          ],
        },
      }),
    );
    assert.equal(twice.data.field, 'config.ports.1.hostPort');
    const badAddress = await refused(
      c.call('sandbox.create', {
        id: 'np',
        config: { network: 'user', ports: [{ hostPort: 8080, guestPort: 80, hostAddress: 'localhost' }] },
      }),
    );
    assert.equal(badAddress.data.field, 'config.ports.0.hostAddress');
  });

  it('refuses malformed guest network changes, naming the field', async () => {
    const address = await refused(
      c.call('guest.updateInterface', {
        sandboxId: 'sb',
        interface: { name: 'eth0', addresses: ['10.0.2.15'] },
      }),
    );
    assert.equal(address.data.field, 'interface.addresses.0');
    const name = await refused(
      c.call('guest.updateInterface', { sandboxId: 'sb', interface: { name: 'eth0; reboot' } }),
    );
    assert.equal(name.data.field, 'interface.name');
    const dest = await refused(
      c.call('guest.updateRoutes', { sandboxId: 'sb', routes: [{ dest: 'somewhere', gateway: '10.0.2.2' }] }),
    );
    assert.equal(dest.data.field, 'routes.0.dest');
    const gateway = await refused(
      c.call('guest.updateRoutes', { sandboxId: 'sb', routes: [{ dest: 'default', gateway: '10.0.2' }] }),
    );
    assert.equal(gateway.data.field, 'routes.0.gateway');
    const time = await refused(c.call('guest.setTime', { sandboxId: 'sb', time: 'tomorrow' }));
    assert.equal(time.data.field, 'time');
  });

  it('refuses volumes whose source is missing or overlaps the state dir, or mounted twice, naming the field', async () => {
    const seq = h.store.lastSeq();
    const create = (mounts: unknown) =>
      c.call('container.create', { sandboxId: 'sb', id: 'v1', bundle, mounts });
    const missing = await refused(create([{ source: '/nonexistent/dir', destination: '/data' }]));
    assert.equal(missing.data.field, 'mounts.0.source');
    assert.match(missing.message, /does not exist/);
    for (const source of [h.dir, h.stateDir, join(h.stateDir, 'sandboxes'), '/']) {
      const stateDir = await refused(create([{ source, destination: '/state' }]));
      assert.equal(stateDir.data.field, 'mounts.0.source');
      assert.match(stateDir.message, /overlaps the sandboxd state dir/);
    }
    const twice = await refused(
      create([
        { source: '/usr', destination: '/data' },
        { source: '/etc', destination: '/data' },
      ]),
    );
    assert.equal(twice.data.field, 'mounts.1.destination');
    const relative = await refused(create([{ source: 'usr', destination: '/data' }]));
    assert.equal(relative.data.field, 'mounts.0.source');
    assert.equal(h.store.lastSeq(), seq, 'nothing was recorded');
  });

  it('refuses label keys that are not label keys (including __proto__), naming the field', async () => {
    const proto = await refused(
      c.call('sandbox.create', JSON.parse('{"id":"lbl","config":{"labels":{"__proto__":"x"}}}')),
    );
    assert.match(String(proto.data.field), /^config\.labels/);
    const ok = (await c.call('sandbox.create', {
      id: 'lbl',
      config: { labels: { 'example.com/team': 'infra', tier: 'web' } },
    })) as { config: { labels: Record<string, string> } };
    assert.deepEqual(ok.config.labels, { 'example.com/team': 'infra', tier: 'web' });
  });

  it('refuses unknown fields instead of ignoring them', async () => {
    const e = await refused(c.call('sandbox.start', { id: 'sb', forceful: true }));
    assert.equal(e.rpcCode, -32602);
    assert.match(e.message, /forceful/);
  });

  it('refuses params given as an array', async () => {
    const e = await refused(c.call('sandbox.status', ['sb']));
    assert.equal(e.rpcCode, -32602);
  });

  it('refuses relative bundle paths and path traversal', async () => {
    for (const b of ['relative/bundle', `${bundle}/../bundle`, `${bundle}/./`, '/tmp//x', '']) {
      const e = await refused(c.call('container.create', { sandboxId: 'sb', id: 'c1', bundle: b }));
      assert.equal(e.rpcCode, -32602, b);
      assert.equal(e.data.field, 'bundle', b);
    }
  });

  it('refuses a bundle that does not exist, is a file, or has no valid config.json', async () => {
    const file = join(h.dir, 'afile');
    await writeFile(file, 'x');
    const noConfig = join(h.dir, 'noconfig');
    await mkdir(noConfig);
    const badJson = join(h.dir, 'badjson');
    await mkdir(badJson);
    await writeFile(join(badJson, 'config.json'), '{ not json');
    const noVersion = join(h.dir, 'noversion');
    await mkdir(join(noVersion, 'rootfs'), { recursive: true });
    await writeFile(join(noVersion, 'config.json'), JSON.stringify({ root: { path: 'rootfs' } }));
    const cases: [string, RegExp][] = [
      [join(h.dir, 'nope'), /^bundle$/],
      [file, /^bundle$/],
      [noConfig, /^bundle$/],
      [badJson, /^bundle\.config\.json$/],
      [noVersion, /^bundle\.config\.json\.ociVersion$/],
    ];
    const seq = h.store.lastSeq();
    const effects = h.world.effects.length;
    for (const [b, field] of cases) {
      const e = await refused(c.call('container.create', { sandboxId: 'sb', id: 'c1', bundle: b }));
      assert.equal(e.data.code, 'InvalidArgument', b);
      assert.match(String(e.data.field), field, b);
    }
    assert.equal(h.store.lastSeq(), seq, 'nothing was recorded');
    assert.equal(h.world.effects.length, effects, 'nothing reached the guest');
  });

  it('passes a valid bundle to the runtime', async () => {
    const v = (await c.call('container.create', { sandboxId: 'sb', id: 'c1', bundle })) as { state: string };
    assert.equal(v.state, 'created');
    const requested = (await h.events()).find((e) => e.type === 'ContainerCreateRequested');
    assert.equal((requested?.data as { bundle?: string } | undefined)?.bundle, bundle);
    assert.equal(h.world.effects.filter((e) => e.op === 'createContainer' && e.target === 'c1').length, 1);
  });

  it('refuses a copyFile path with traversal and data that is not base64', async () => {
    const e1 = await refused(c.call('guest.copyFile', { sandboxId: 'sb', path: '/etc/../root/x', data: '' }));
    assert.equal(e1.data.field, 'path');
    const e2 = await refused(
      c.call('guest.copyFile', { sandboxId: 'sb', path: '/tmp/x', data: 'not base64!' }),
    );
    assert.equal(e2.data.field, 'data');
  });

  it('normalises signal names and refuses nonsense signals', async () => {
    const e = await refused(c.call('container.kill', { sandboxId: 'sb', id: 'c1', signal: 'sig term' }));
    assert.equal(e.data.field, 'signal');
  });
});
