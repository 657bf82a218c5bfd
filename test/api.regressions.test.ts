// Cases the API fuzz test found (each failed once): bad input refused by name, typed errors for racing commands.
import assert from 'node:assert/strict';
import { type AddressInfo, createServer } from 'node:net';
import { before, describe, it } from 'node:test';
import type { ApiClient } from '../src/api/index.js';
import { type Harness, rawClient, refused, withApi } from './support/api-harness.js';

describe('API regressions found by fuzzing', () => {
  let h: Harness;
  let c: ApiClient;
  withApi((api) => {
    ({ h, c } = api);
  });
  before(async () => {
    const bundle = h.apiBundle;
    await c.call('sandbox.create', { id: 'sb' });
    await c.call('sandbox.start', { id: 'sb' });
    await c.call('container.create', { sandboxId: 'sb', id: 'c', bundle });
    await c.call('container.start', { sandboxId: 'sb', id: 'c' });
  });

  const invalid = async (method: string, params: unknown, field: string) => {
    const seq = h.store.lastSeq();
    const e = await refused(c.call(method, params));
    assert.deepEqual([e.rpcCode, e.data.field], [-32602, field], e.message);
    assert.equal(h.store.lastSeq(), seq);
  };

  it('1. refuses a label named __proto__ instead of dropping it (whatever its value)', async () => {
    await invalid(
      'sandbox.create',
      JSON.parse('{"id":"p2","config":{"labels":{"__proto__":{"not":"a string"}}}}'),
      'config.labels.__proto__',
    );
  });
  it('2. refuses dns entries that are not IP addresses', async () => {
    for (const dns of ['.', 'c', ':::', 'ffff'])
      await invalid('sandbox.create', { id: 'd1', config: { dns: [dns] } }, 'config.dns.0');
  });
  it('3. refuses times that are not ISO-8601', async () => {
    for (const time of ['1', 'May 5', '0']) await invalid('guest.setTime', { sandboxId: 'sb', time }, 'time');
    await invalid('events.read', { since: '1' }, 'since');
  });
  it('4. refuses base64 that does not decode whole', async () => {
    await invalid('exec.writeStdin', { sandboxId: 'sb', containerId: 'c', execId: '', data: 'A' }, 'data');
    await invalid('guest.reseedRandom', { sandboxId: 'sb', data: 'AAAAA' }, 'data');
  });
  it('5. refuses signal numbers out of 1..64 given as strings, like the same numbers', async () => {
    for (const signal of ['99999', '0', '65'])
      await invalid('container.kill', { sandboxId: 'sb', id: 'c', signal }, 'signal');
  });
  it('6. a start refused for a taken host port names the field and leaves the sandbox startable', async () => {
    const holder = createServer();
    await new Promise<void>((r) => holder.listen({ port: 0, host: '127.0.0.1' }, r));
    const port = (holder.address() as AddressInfo).port;
    await c.call('sandbox.create', {
      id: 'net',
      config: { network: 'user', ports: [{ hostPort: port, guestPort: 80 }] },
    });
    const seq = h.store.lastSeq();
    const e = await refused(c.call('sandbox.start', { id: 'net' }));
    await new Promise((r) => holder.close(r));
    assert.equal(e.data.field, 'config.ports.0.hostPort', e.message);
    assert.equal(h.store.lastSeq(), seq, 'nothing recorded');
    assert.equal(((await c.call('sandbox.start', { id: 'net' })) as { state: string }).state, 'running');
  });
  it('7. refuses forwarding one host port on 0.0.0.0 and on 127.0.0.1 (QEMU cannot bind both)', async () => {
    await invalid(
      'sandbox.create',
      {
        id: 'pp',
        config: {
          network: 'user',
          ports: [
            { hostPort: 8080, guestPort: 80, hostAddress: '0.0.0.0' },
            { hostPort: 8080, guestPort: 81 },
          ],
        },
      },
      'config.ports.1.hostPort',
    );
  });
  it('8. a command overtaken by a forced delete gets a typed error, not Internal', async () => {
    const bundle = h.apiBundle;
    const pairs: [string, string, (id: string) => unknown, string, (id: string) => unknown][] = [
      ['running', 'sandbox.stop', (id) => ({ id }), 'sandbox.delete', (id) => ({ id, force: true })],
      ['running', 'sandbox.pause', (id) => ({ id }), 'sandbox.delete', (id) => ({ id, force: true })],
      ['created', 'sandbox.start', (id) => ({ id }), 'sandbox.delete', (id) => ({ id, force: true })],
      [
        'running',
        'container.pause',
        (id) => ({ sandboxId: id, id: 'c' }),
        'container.delete',
        (id) => ({ sandboxId: id, id: 'c', force: true }),
      ],
      [
        'running',
        'container.pause',
        (id) => ({ sandboxId: id, id: 'c' }),
        'sandbox.delete',
        (id) => ({ id, force: true }),
      ],
      [
        'ccreated',
        'container.start',
        (id) => ({ sandboxId: id, id: 'c' }),
        'container.delete',
        (id) => ({ sandboxId: id, id: 'c', force: true }),
      ],
      ['paused', 'sandbox.resume', (id) => ({ id }), 'sandbox.delete', (id) => ({ id, force: true })],
    ];
    const internal: string[] = [];
    for (const [i, [state, a, pa, b, pb]] of pairs.entries()) {
      const id = `race${i}`;
      await c.call('sandbox.create', { id });
      if (state !== 'created') {
        await c.call('sandbox.start', { id });
        await c.call('container.create', { sandboxId: id, id: 'c', bundle });
        if (state !== 'ccreated') await c.call('container.start', { sandboxId: id, id: 'c' });
        if (state === 'paused') await c.call('sandbox.pause', { id });
      }
      const answers = await Promise.allSettled([c.call(a, pa(id)), c.call(b, pb(id))]);
      for (const x of answers) {
        if (x.status === 'rejected' && (x.reason as { data?: { code?: string } }).data?.code === 'Internal')
          internal.push(`${a} || ${b}: ${(x.reason as Error).message}`);
      }
    }
    assert.deepEqual(internal, []);
  });

  it('9. an unknown method carries data.code like every other protocol error', async () => {
    const raw = await rawClient(h.socketPath);
    const answer = (await raw.request({ jsonrpc: '2.0', id: 1, method: 'no.such' })) as {
      error: { code: number; data?: { code?: string } };
    };
    raw.close();
    assert.equal(answer.error.code, -32601);
    assert.equal(answer.error.data?.code, 'InvalidArgument');
  });
});
