// The wire protocol: newline framing, parse errors, invalid requests, unknown methods, batches, size limit.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gate, type Harness, halfClose, rawClient, withApi } from './support/api-harness.js';

type Resp = {
  id?: unknown;
  result?: unknown;
  error?: { code: number; message: string; data?: Record<string, unknown> };
};

describe('api protocol', () => {
  let h: Harness;
  withApi(
    (api) => {
      h = api.h;
    },
    { client: false },
  );

  it('answers a request on one line with its id', async () => {
    const c = await rawClient(h.socketPath);
    const r = (await c.request({ jsonrpc: '2.0', id: 7, method: 'daemon.info' })) as Resp;
    assert.equal(r.id, 7);
    assert.equal((r.result as { hypervisor: { mode: string } }).hypervisor.mode, 'tcg');
    c.close();
  });

  it('reassembles a request split across writes and handles two requests in one write', async () => {
    const c = await rawClient(h.socketPath);
    const line = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'sandbox.list' });
    await new Promise((r) => c.socket.write(line.slice(0, 10), r));
    // A round trip on another connection, begun once the first piece was sent, lets the server read it alone.
    const other = await rawClient(h.socketPath);
    await other.request({ jsonrpc: '2.0', id: 1, method: 'daemon.info' });
    other.close();
    c.send(`${line.slice(10)}\n${JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'sandbox.list' })}\n`);
    const ids = [((await c.next()) as Resp).id, ((await c.next()) as Resp).id].sort();
    assert.deepEqual(ids, [1, 2]);
    c.close();
  });

  it('answers malformed JSON with -32700 and keeps the connection usable', async () => {
    const c = await rawClient(h.socketPath);
    c.send('{"jsonrpc": "2.0", "id": 1, "method": \n');
    const r = (await c.next()) as Resp;
    assert.equal(r.id, null);
    assert.equal(r.error?.code, -32700);
    const ok = (await c.request({ jsonrpc: '2.0', id: 2, method: 'sandbox.list' })) as Resp;
    assert.deepEqual(ok.result, []);
    c.close();
  });

  it('answers a request that is not a request object with -32600', async () => {
    const c = await rawClient(h.socketPath);
    for (const bad of [
      42,
      'x',
      null,
      { id: 1, method: 'sandbox.list' },
      { jsonrpc: '2.0', id: 3, method: 5 },
    ]) {
      const r = (await c.request(bad)) as Resp;
      assert.equal(r.error?.code, -32600, JSON.stringify(bad));
    }
    const r = (await c.request({ jsonrpc: '2.0', id: 4, method: 'sandbox.list', params: 'nope' })) as Resp;
    assert.equal(r.error?.code, -32600);
    assert.equal(r.error?.data?.field, 'params');
    c.close();
  });

  it('answers an unknown method with -32601 naming the method field', async () => {
    const c = await rawClient(h.socketPath);
    const r = (await c.request({ jsonrpc: '2.0', id: 'a', method: 'sandbox.explode', params: {} })) as Resp;
    assert.equal(r.id, 'a');
    assert.equal(r.error?.code, -32601);
    assert.deepEqual(r.error?.data, { code: 'InvalidArgument', field: 'method' });
    assert.match(r.error?.message ?? '', /sandbox\.explode/);
    c.close();
  });

  it('sends each protocol error with the data.code docs/api.md lists for it', async () => {
    const doc = await readFile(fileURLToPath(new URL('../../docs/api.md', import.meta.url)), 'utf8');
    const listed = new Map(
      [...doc.matchAll(/^\| (-32[67]\d\d) \| ([^|]+) \|/gm)].map((m) => [Number(m[1]), m[2]!.trim()]),
    );
    assert.deepEqual(
      [...listed.keys()].sort((a, b) => a - b),
      [-32700, -32602, -32601, -32600],
    );
    const c = await rawClient(h.socketPath);
    c.send('{not json\n');
    const answers = [(await c.next()) as Resp];
    for (const req of [
      { jsonrpc: '1.0', id: 1, method: 'daemon.info' },
      { jsonrpc: '2.0', id: 2, method: 'no.such' },
      { jsonrpc: '2.0', id: 3, method: 'sandbox.status', params: { id: 7 } },
    ]) {
      answers.push((await c.request(req)) as Resp);
    }
    c.close();
    for (const a of answers) {
      assert.ok(a.error, JSON.stringify(a));
      assert.equal(a.error.data?.code, listed.get(a.error.code), `code ${a.error.code}`);
    }
  });

  it('answers a last request without its newline at EOF, then closes', async () => {
    const lines = (await halfClose(
      h.socketPath,
      JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'sandbox.list' }),
    )) as Resp[];
    assert.deepEqual(lines, [{ jsonrpc: '2.0', id: 5, result: [] }]);
  });

  it('answers every request sent before a half-close, one still in flight at EOF included, then closes', async () => {
    const line = (id: number, method: string) =>
      `${JSON.stringify({ jsonrpc: '2.0', id, method, params: { id: 'eof1' } })}\n`;
    // The start's VM launch is held until the client has half-closed: its answer comes after the EOF.
    const creator = await rawClient(h.socketPath);
    await creator.request({ jsonrpc: '2.0', id: 1, method: 'sandbox.create', params: { id: 'eof1' } });
    creator.close();
    const launch = gate(h.hypervisor, 'launch');
    const answers = halfClose(h.socketPath, line(1, 'sandbox.status') + line(2, 'sandbox.start'));
    await launch.reached;
    // A round trip on another connection, begun after the EOF was sent: the server has read that EOF by now.
    const other = await rawClient(h.socketPath);
    await other.request({ jsonrpc: '2.0', id: 1, method: 'daemon.info' });
    other.close();
    launch.release();
    const lines = (await answers) as Resp[];
    assert.deepEqual(
      lines.map((l) => [l.id, (l.result as { state?: string } | undefined)?.state]),
      [
        [1, 'created'],
        [2, 'running'],
      ],
      JSON.stringify(lines),
    );
  });

  it('answers a last line cut short by EOF with a parse error, then closes', async () => {
    const lines = (await halfClose(h.socketPath, '{"jsonrpc":"2.0","id":1,"meth')) as Resp[];
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.error?.code, -32700);
    assert.equal(lines[0]?.error?.data?.code, 'InvalidArgument');
  });

  it('answers a batch with an array in which each request gets its own outcome', async () => {
    const c = await rawClient(h.socketPath);
    const r = (await c.request([
      { jsonrpc: '2.0', id: 1, method: 'sandbox.create', params: { id: 'batch1' } },
      { jsonrpc: '2.0', id: 2, method: 'sandbox.status', params: { id: 'missing' } },
      { jsonrpc: '2.0', method: 'sandbox.list' },
      { jsonrpc: '2.0', id: 3, method: 'nope' },
      17,
    ])) as Resp[];
    assert.ok(Array.isArray(r));
    assert.equal(r.length, 4, 'the notification gets no response');
    const byId = new Map(r.map((x) => [x.id, x]));
    assert.equal((byId.get(1)!.result as { state: string }).state, 'created');
    assert.equal(byId.get(2)?.error?.data?.code, 'NotFound');
    assert.equal(byId.get(3)?.error?.code, -32601);
    assert.equal(byId.get(null)?.error?.code, -32600);
    c.close();
  });

  it('answers a batch of one with an array of one, and an empty batch with -32600', async () => {
    const c = await rawClient(h.socketPath);
    const one = await c.request([{ jsonrpc: '2.0', id: 1, method: 'sandbox.list' }]);
    assert.ok(Array.isArray(one));
    assert.equal((one as Resp[]).length, 1);
    const empty = (await c.request([])) as Resp;
    assert.equal(empty.error?.code, -32600);
    c.close();
  });

  it('refuses a request over 1 MiB and serves the next one on the same connection', async () => {
    const c = await rawClient(h.socketPath);
    const huge = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'sandbox.create',
      params: { id: 'x', pad: 'y'.repeat(1024 * 1024 + 10) },
    });
    // Sent in pieces, as a real client's large write would arrive.
    for (let i = 0; i < huge.length; i += 65536) c.send(huge.slice(i, i + 65536));
    c.send('\n');
    const r = (await c.next()) as Resp;
    assert.equal(r.error?.code, -32600);
    assert.match(r.error?.message ?? '', /larger than 1048576/);
    const ok = (await c.request({ jsonrpc: '2.0', id: 2, method: 'sandbox.list' })) as Resp;
    assert.equal(ok.id, 2);
    assert.ok(Array.isArray(ok.result));
    assert.equal((await h.events()).filter((e) => e.stream === 'sandbox-x').length, 0, 'nothing was created');
    c.close();
  });

  it('accepts a request just under 1 MiB', async () => {
    const c = await rawClient(h.socketPath);
    const data = Buffer.alloc(700 * 1024, 1)
      .toString('base64')
      .slice(0, 1024 * 1024 - 300);
    const payload = {
      jsonrpc: '2.0',
      id: 9,
      method: 'guest.copyFile',
      params: { sandboxId: 'nosuch', path: '/tmp/f', data: data.slice(0, data.length - (data.length % 4)) },
    };
    assert.ok(JSON.stringify(payload).length < 1024 * 1024);
    const r = (await c.request(payload)) as Resp;
    assert.equal(r.error?.data?.code, 'NotFound', 'it reached the handler');
    c.close();
  });
});
