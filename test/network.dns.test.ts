// The guest's resolver config: CRI's DNSConfig shape in the sandbox config (validated, naming the field; shown
// in the view), and ip-netns's /etc/netns/NAME/resolv.conf read as the resolver reads it.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { ApiClient } from '../src/api/index.js';
import {
  dnsOf,
  netnsResolvConfPath,
  parseResolvConf,
  readNetnsDns,
  resolvConfLines,
} from '../src/network/index.js';
import { type Harness, refused, withApi } from './support/api-harness.js';

describe('resolv.conf for a sandbox', () => {
  it('reads resolv.conf as the resolver does: the last search or domain, options adding up', () => {
    const text = [
      '# written by CNI',
      'domain old.example',
      'nameserver 10.96.0.10',
      'nameserver fd00::a ; second',
      'search ns1.svc.cluster.local svc.cluster.local',
      'sortlist 10.0.0.0/8',
      'options ndots:5',
      'options edns0 timeout:2',
      'nameserver',
    ].join('\n');
    assert.deepEqual(parseResolvConf(text), {
      servers: ['10.96.0.10', 'fd00::a'],
      searches: ['ns1.svc.cluster.local', 'svc.cluster.local'],
      options: ['ndots:5', 'edns0', 'timeout:2'],
    });
    assert.deepEqual(parseResolvConf('domain corp.example\n').searches, ['corp.example']);
  });

  it('writes the lines the guest puts in /etc/resolv.conf, and takes the older list of servers', () => {
    assert.deepEqual(
      resolvConfLines({
        servers: ['10.0.0.2', 'fd00::2'],
        searches: ['a.example', 'b'],
        options: ['ndots:2'],
      }),
      ['nameserver 10.0.0.2', 'nameserver fd00::2', 'search a.example b', 'options ndots:2'],
    );
    assert.deepEqual(dnsOf(['1.1.1.1']), { servers: ['1.1.1.1'], searches: [], options: [] });
    assert.deepEqual(dnsOf({ searches: ['x.example'] }), {
      servers: [],
      searches: ['x.example'],
      options: [],
    });
    assert.equal(dnsOf(undefined), undefined);
  });

  it('finds /etc/netns/NAME/resolv.conf for a named namespace only', async () => {
    assert.equal(netnsResolvConfPath('/run/netns/pod1'), '/etc/netns/pod1/resolv.conf');
    assert.equal(netnsResolvConfPath('/var/run/netns/cni-1234'), '/etc/netns/cni-1234/resolv.conf');
    assert.equal(netnsResolvConfPath('/proc/42/ns/net'), undefined);
    const etc = await mkdtemp(join(tmpdir(), 'sbx-etc-'));
    try {
      assert.equal(await readNetnsDns('/run/netns/pod1', etc), undefined, 'no file: nothing');
      await mkdir(join(etc, 'netns', 'pod1'), { recursive: true });
      await writeFile(join(etc, 'netns', 'pod1', 'resolv.conf'), '# nothing here\n');
      assert.equal(
        await readNetnsDns('/run/netns/pod1', etc),
        undefined,
        'a file that says nothing: nothing',
      );
      await writeFile(join(etc, 'netns', 'pod1', 'resolv.conf'), 'nameserver 10.9.0.1\nsearch pod.example\n');
      assert.deepEqual(await readNetnsDns('/run/netns/pod1', etc), {
        servers: ['10.9.0.1'],
        searches: ['pod.example'],
        options: [],
      });
    } finally {
      await rm(etc, { recursive: true, force: true });
    }
  });
});

describe('a sandbox config’s dns through the API', () => {
  let h: Harness;
  let c: ApiClient;
  withApi((api) => {
    ({ h, c } = api);
  });

  it('takes CRI’s DNSConfig shape and shows what the guest gets in the view', async () => {
    const dns = {
      servers: ['10.96.0.10'],
      searches: ['default.svc.cluster.local', 'cluster.local.'],
      options: ['ndots:5'],
    };
    const view = (await c.call('sandbox.create', { id: 'dns1', config: { dns } })) as {
      dns?: unknown;
      config: unknown;
    };
    assert.deepEqual(view.dns, dns);
    assert.deepEqual((view.config as { dns: unknown }).dns, dns);
    const listed = (await c.call('sandbox.create', { id: 'dns2', config: { dns: ['9.9.9.9'] } })) as {
      dns?: unknown;
    };
    assert.deepEqual(listed.dns, { servers: ['9.9.9.9'], searches: [], options: [] });
    const user = (await c.call('sandbox.create', { id: 'dns3', config: { network: 'user' } })) as {
      dns?: unknown;
    };
    assert.deepEqual(user.dns, { servers: ['10.0.2.3'], searches: [], options: [] }, 'QEMU’s resolver');
    const none = (await c.call('sandbox.create', { id: 'dns4' })) as { dns?: unknown };
    assert.equal(none.dns, undefined);
  });

  it('refuses a bad server, search domain or option, naming the field, and records nothing', async () => {
    const seq = h.store.lastSeq();
    const cases: [unknown, string][] = [
      [{ servers: ['not-an-ip'] }, 'config.dns.servers.0'],
      [{ servers: ['1.1.1.1', '1.0.0.1', '8.8.8.8', '8.8.4.4'] }, 'config.dns.servers'],
      [{ searches: ['ok.example', 'two words'] }, 'config.dns.searches.1'],
      [{ searches: ['a\nnameserver 6.6.6.6'] }, 'config.dns.searches.0'],
      [{ searches: Array.from({ length: 33 }, (_, i) => `d${i}.example`) }, 'config.dns.searches'],
      [{ options: ['ndots:5', 'rotate\noptions debug'] }, 'config.dns.options.1'],
      [{ servers: ['1.1.1.1'], nameservers: ['1.1.1.1'] }, 'config.dns'],
      [['1.1.1.1', 'x'], 'config.dns.1'],
    ];
    for (const [dns, field] of cases) {
      const e = await refused(c.call('sandbox.create', { id: 'bad', config: { dns } }));
      assert.equal(e.data.code, 'InvalidArgument', JSON.stringify(dns));
      assert.equal(e.data.field, field, JSON.stringify(dns));
    }
    assert.equal(h.store.lastSeq(), seq, 'nothing recorded');
  });
});
