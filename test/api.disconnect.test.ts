// A client that hangs up mid-request, mid-line or with requests in flight harms neither the daemon nor others.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SandboxView } from '../src/actors/index.js';
import { connectApi } from '../src/api/index.js';
import { gate, type Harness, rawClient, withApi } from './support/api-harness.js';
import { until } from './support/vm.js';

describe('api disconnects', () => {
  let h: Harness;
  withApi(
    (api) => {
      h = api.h;
    },
    { client: false },
  );

  it('finishes a command whose client disconnected mid-request, and serves other clients meanwhile', async () => {
    const quitter = await rawClient(h.socketPath);
    await quitter.request({ jsonrpc: '2.0', id: 1, method: 'sandbox.create', params: { id: 'orphan' } });
    // The VM launch is held until the client is gone and another one was served.
    const launch = gate(h.hypervisor, 'launch');
    quitter.send(
      `${JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'sandbox.start', params: { id: 'orphan' } })}\n`,
    );
    await launch.reached;
    quitter.close();
    const other = await connectApi(h.socketPath);
    const listed = await other.call<SandboxView[]>('sandbox.list');
    assert.deepEqual(
      listed.map((s) => [s.id, s.state]),
      [['orphan', 'starting']],
    );
    launch.release();
    await h.runtime.idle();
    const s = await other.call<SandboxView>('sandbox.status', { id: 'orphan' });
    assert.equal(s.state, 'running', 'the command ran to its end');
    // The orphan's connection goes once its answer found nobody to read it.
    await until('the orphaned answer was settled', 5000, async () =>
      h.server.inFlight === 0 && h.server.connections === 1 ? true : undefined,
    );
    other.close();
  });

  it('runs nothing of half a line from a client that hung up mid-message', async () => {
    const c = await rawClient(h.socketPath);
    const before = h.store.lastSeq();
    c.send('{"jsonrpc":"2.0","id":1,"method":"sandbox.create","params":{"id":"half"}');
    c.close();
    await until('the server saw the client go', 5000, async () =>
      h.server.connections === 0 ? true : undefined,
    );
    const other = await connectApi(h.socketPath);
    assert.equal((await other.call<SandboxView[]>('sandbox.list')).length, 1);
    assert.equal(h.store.lastSeq(), before, 'the half request was not run');
    other.close();
  });

  it('survives a client that sends many requests and vanishes without reading', async () => {
    const c = await rawClient(h.socketPath);
    let burst = '';
    for (let i = 0; i < 2000; i++)
      burst += `${JSON.stringify({ jsonrpc: '2.0', id: i, method: 'daemon.info' })}\n`;
    c.send(burst);
    c.close();
    await until('the server saw the client go', 5000, async () =>
      h.server.connections === 0 ? true : undefined,
    );
    const other = await connectApi(h.socketPath);
    const info = (await other.call('daemon.info')) as { version: string };
    assert.equal(info.version, 'test');
    await until('the vanished client’s requests were settled', 5000, async () =>
      h.server.inFlight === 1 || h.server.inFlight === 0 ? true : undefined,
    );
    other.close();
  });
});
