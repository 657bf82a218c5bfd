// A client that hangs up mid-request, mid-line or with requests in flight harms neither the daemon nor others.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectApi } from '../src/api/index.js';
import { type Harness, rawClient, startHarness } from './support/api-harness.js';

describe('api disconnects', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ fake: { startDelayMs: 200 } });
  });
  after(async () => {
    await h.close();
  });

  it('finishes a command whose client disconnected mid-request, and serves other clients meanwhile', async () => {
    const quitter = await rawClient(h.socketPath);
    await quitter.request({ jsonrpc: '2.0', id: 1, method: 'sandbox.create', params: { id: 'orphan' } });
    quitter.send(
      `${JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'sandbox.start', params: { id: 'orphan' } })}\n`,
    );
    await new Promise((r) => setTimeout(r, 20));
    quitter.close();
    const other = await connectApi(h.socketPath);
    const list = (await other.call('sandbox.list')) as { id: string }[];
    assert.ok(list.some((s) => s.id === 'orphan'));
    await new Promise((r) => setTimeout(r, 300));
    const s = (await other.call('sandbox.status', { id: 'orphan' })) as { state: string };
    assert.equal(s.state, 'running', 'the command ran to its end');
    assert.equal(h.server.inFlight, 0);
    other.close();
  });

  it('forgets half a line from a client that hung up mid-message', async () => {
    const c = await rawClient(h.socketPath);
    c.send('{"jsonrpc":"2.0","id":1,"method":"sandbox.cre');
    c.close();
    const other = await connectApi(h.socketPath);
    assert.ok(Array.isArray(await other.call('sandbox.list')));
    other.close();
  });

  it('survives a client that sends many requests and vanishes without reading', async () => {
    const c = await rawClient(h.socketPath);
    let burst = '';
    for (let i = 0; i < 2000; i++)
      burst += `${JSON.stringify({ jsonrpc: '2.0', id: i, method: 'daemon.info' })}\n`;
    c.send(burst);
    c.close();
    await new Promise((r) => setTimeout(r, 100));
    const other = await connectApi(h.socketPath);
    const info = (await other.call('daemon.info')) as { version: string };
    assert.equal(info.version, 'test');
    other.close();
  });
});
