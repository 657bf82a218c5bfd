// ttrpc client and server over a real unix socket: round trips, metadata, errors as statuses, deadlines,
// cancellation, concurrency, protocol violations answered as ttrpc answers them, graceful close.
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  Code,
  decodeResponse,
  encodeFrame,
  encodeRequest,
  type Frame,
  FrameDecoder,
  MAX_MESSAGE_LENGTH,
  MessageType,
  TtrpcClient,
  TtrpcError,
  TtrpcServer,
} from '../src/ttrpc/index.js';

/** A one-shot barrier: `wait` resolves once `open()` was called. */
function gate() {
  let open!: () => void;
  const wait = new Promise<void>((r) => {
    open = r;
  });
  return { wait, open };
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ttrpc-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function start(
  setup: (s: TtrpcServer) => void,
  options?: ConstructorParameters<typeof TtrpcServer>[0],
) {
  const server = new TtrpcServer(options);
  setup(server);
  const path = join(dir, `s${n++}.sock`);
  await server.listen(path);
  const client = await TtrpcClient.connect(path);
  return { server, client, path };
}

/** A raw connection that sends hand-made frames and reads frames back. */
async function raw(path: string) {
  const socket: Socket = await new Promise((resolve, reject) => {
    const s = connect(path, () => resolve(s));
    s.once('error', reject);
  });
  const frames: Frame[] = [];
  const waiters: (() => void)[] = [];
  const d = new FrameDecoder(
    (f) => {
      frames.push(f);
      for (const w of waiters.splice(0)) w();
    },
    () => undefined,
  );
  socket.on('data', (c: Buffer) => d.push(c));
  return {
    socket,
    async next(): Promise<Frame> {
      while (frames.length === 0) await new Promise<void>((r) => waiters.push(r));
      return frames.shift() as Frame;
    },
  };
}

const req = (service: string, method: string, payload = Buffer.alloc(0)) =>
  Buffer.from(encodeRequest({ service, method, payload, timeoutNano: 0n, metadata: {} }));

describe('ttrpc rpc', () => {
  it('round-trips payloads, with metadata seen by the handler, and makes the socket 0600', async () => {
    const { server, client, path } = await start((s) =>
      s.register('test.v1.Echo', {
        Echo: (p, ctx) =>
          Buffer.concat([Buffer.from(`${ctx.service}/${ctx.method} ${JSON.stringify(ctx.metadata)} `), p]),
        Empty: () => new Uint8Array(),
      }),
    );
    const out = await client.call('test.v1.Echo', 'Echo', Buffer.from('hello'), {
      metadata: { 'containerd-namespace-ttrpc': ['default'], k: ['a', 'b'] },
    });
    assert.equal(
      out.toString(),
      'test.v1.Echo/Echo {"containerd-namespace-ttrpc":["default"],"k":["a","b"]} hello',
    );
    assert.equal((await client.call('test.v1.Echo', 'Empty', Buffer.from('x'))).length, 0);
    const big = Buffer.alloc(3 << 20, 1);
    const back = await client.call('test.v1.Echo', 'Echo', big);
    assert.equal(back.length, big.length + Buffer.from('test.v1.Echo/Echo {} ').length);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    client.close();
    await server.close();
  });

  it('answers an unknown service or method Unimplemented as ttrpc words it', async () => {
    const { server, client } = await start((s) => s.register('test.v1.A', { M: () => new Uint8Array() }));
    await assert.rejects(client.call('test.v1.B', 'M', Buffer.alloc(0)), (e: TtrpcError) => {
      assert.equal(e.code, Code.Unimplemented);
      assert.equal(e.message, 'service test.v1.B');
      return true;
    });
    await assert.rejects(client.call('test.v1.A', 'N', Buffer.alloc(0)), {
      code: Code.Unimplemented,
      message: 'method N',
    });
    client.close();
    await server.close();
  });

  it('turns a handler error into its status: TtrpcError as thrown, others Unknown or by toStatus', async () => {
    const { server, client } = await start(
      (s) =>
        s.register('t.S', {
          NotFound: () => {
            throw new TtrpcError(Code.NotFound, 'container x: not found');
          },
          Plain: async () => {
            throw new Error('boom');
          },
          Mapped: () => {
            throw Object.assign(new Error('taken'), { kind: 'AlreadyExists' });
          },
        }),
      {
        toStatus: (e) =>
          (e as { kind?: string }).kind === 'AlreadyExists'
            ? { code: Code.AlreadyExists, message: (e as Error).message }
            : e instanceof TtrpcError
              ? { code: e.code, message: e.message }
              : { code: Code.Unknown, message: (e as Error).message },
      },
    );
    await assert.rejects(client.call('t.S', 'NotFound', Buffer.alloc(0)), {
      code: Code.NotFound,
      codeName: 'NotFound',
      message: 'container x: not found',
    });
    await assert.rejects(client.call('t.S', 'Plain', Buffer.alloc(0)), {
      code: Code.Unknown,
      message: 'boom',
    });
    await assert.rejects(client.call('t.S', 'Mapped', Buffer.alloc(0)), { code: Code.AlreadyExists });
    client.close();
    await server.close();
  });

  it('ends a call at its deadline (client: DeadlineExceeded; server: the handler signal aborts)', async () => {
    const aborted = gate();
    const { server, client } = await start((s) =>
      s.register('t.S', {
        Slow: (_p, ctx) =>
          new Promise((_resolve, reject) => {
            ctx.signal.addEventListener('abort', () => {
              aborted.open();
              reject(ctx.signal.reason);
            });
          }),
        Fast: () => Buffer.from('ok'),
      }),
    );
    const t0 = Date.now();
    await assert.rejects(client.call('t.S', 'Slow', Buffer.alloc(0), { timeoutMs: 150 }), {
      code: Code.DeadlineExceeded,
    });
    assert.ok(Date.now() - t0 >= 140);
    await aborted.wait;
    // The late (error) answer to the dead stream is dropped; the connection keeps working.
    assert.equal((await client.call('t.S', 'Fast', Buffer.alloc(0))).toString(), 'ok');
    client.close();
    await server.close();
  });

  it('cancels a call on its AbortSignal with Canceled, before or during it', async () => {
    const hold = gate();
    const { server, client } = await start((s) =>
      s.register('t.S', { Hold: () => hold.wait.then(() => Buffer.from('late')) }),
    );
    const ac = new AbortController();
    const p = client.call('t.S', 'Hold', Buffer.alloc(0), { signal: ac.signal });
    ac.abort();
    await assert.rejects(p, { code: Code.Canceled, message: 'context canceled' });
    await assert.rejects(client.call('t.S', 'Hold', Buffer.alloc(0), { signal: ac.signal }), {
      code: Code.Canceled,
    });
    assert.equal(client.inFlight, 0);
    hold.open();
    client.close();
    await server.close();
  });

  it('serves concurrent calls on one connection, each answer to its own stream, in the order they finish', async () => {
    const { server, client } = await start((s) =>
      s.register('t.S', {
        Delay: async (p) => {
          const ms = p.readUInt16BE(0);
          await new Promise((r) => setTimeout(r, ms));
          return p;
        },
      }),
    );
    const finished: number[] = [];
    const delays = Array.from({ length: 50 }, (_, i) => (50 - i) * 2);
    const results = await Promise.all(
      delays.map(async (ms, i) => {
        const b = Buffer.alloc(4);
        b.writeUInt16BE(ms, 0);
        b.writeUInt16BE(i, 2);
        const out = await client.call('t.S', 'Delay', b);
        finished.push(i);
        return out.readUInt16BE(2);
      }),
    );
    assert.deepEqual(
      results,
      delays.map((_, i) => i),
    );
    assert.ok(finished.indexOf(49) < finished.indexOf(0), 'the shortest call answered before the longest');
    client.close();
    await server.close();
  });

  it('uses odd, increasing stream ids', async () => {
    const seen: number[] = [];
    const server = new TtrpcServer();
    server.register('t.S', { M: () => new Uint8Array() });
    const path = join(dir, `ids${n++}.sock`);
    await server.listen(path);
    const client = await TtrpcClient.connect(path);
    const d = new FrameDecoder(
      (f) => seen.push(f.streamId),
      () => undefined,
    );
    const write = client.socket.write.bind(client.socket);
    client.socket.write = ((chunk: Buffer, ...rest: never[]) => {
      d.push(chunk);
      return write(chunk, ...rest);
    }) as typeof client.socket.write;
    for (let i = 0; i < 4; i++) await client.call('t.S', 'M', Buffer.alloc(0));
    assert.deepEqual(seen, [1, 3, 5, 7]);
    client.close();
    await server.close();
  });

  it('answers protocol violations on their stream and keeps the connection: even id, reused id, oversize, bad request, data', async () => {
    const { server, path, client } = await start((s) => s.register('t.S', { M: () => Buffer.from('m') }));
    client.close();
    const r = await raw(path);
    const answer = async () => {
      const f = await r.next();
      assert.equal(f.type, MessageType.Response);
      return { id: f.streamId, ...decodeResponse(f.data) };
    };
    r.socket.write(encodeFrame(2, MessageType.Request, 0, req('t.S', 'M')));
    assert.deepEqual(await answer(), {
      id: 2,
      status: { code: Code.InvalidArgument, message: 'StreamID must be odd for client initiated streams' },
      payload: Buffer.alloc(0),
    });
    r.socket.write(encodeFrame(5, MessageType.Request, 0, req('t.S', 'M')));
    assert.equal((await answer()).payload.toString(), 'm');
    r.socket.write(encodeFrame(3, MessageType.Request, 0, req('t.S', 'M')));
    assert.deepEqual((await answer()).status, {
      code: Code.InvalidArgument,
      message: 'StreamID cannot be re-used and must increment',
    });
    const head = Buffer.alloc(10);
    head.writeUInt32BE(MAX_MESSAGE_LENGTH + 10, 0);
    head.writeUInt32BE(7, 4);
    head.writeUInt8(MessageType.Request, 8);
    r.socket.write(Buffer.concat([head, Buffer.alloc(MAX_MESSAGE_LENGTH + 10)]));
    assert.deepEqual(await answer(), {
      id: 7,
      status: {
        code: Code.ResourceExhausted,
        message: `message length ${MAX_MESSAGE_LENGTH + 10} exceed maximum message size of ${MAX_MESSAGE_LENGTH}`,
      },
      payload: Buffer.alloc(0),
    });
    r.socket.write(encodeFrame(9, MessageType.Request, 0, Buffer.from([0x0a, 0xff])));
    const bad = await answer();
    assert.equal(bad.status?.code, Code.InvalidArgument);
    assert.match(bad.status?.message ?? '', /^unmarshal request error/);
    r.socket.write(encodeFrame(11, MessageType.Data, 0, Buffer.from('x')));
    assert.deepEqual((await answer()).status, {
      code: Code.InvalidArgument,
      message: 'StreamID is no longer active',
    });
    r.socket.write(encodeFrame(13, MessageType.Request, 0, req('t.S', 'M')));
    assert.deepEqual(await answer(), { id: 13, payload: Buffer.from('m') });
    r.socket.destroy();
    await server.close();
  });

  it('refuses to send a request over 4 MiB (ResourceExhausted) without breaking the connection', async () => {
    const { server, client } = await start((s) => s.register('t.S', { M: () => Buffer.from('m') }));
    await assert.rejects(client.call('t.S', 'M', Buffer.alloc(MAX_MESSAGE_LENGTH)), {
      code: Code.ResourceExhausted,
    });
    assert.equal((await client.call('t.S', 'M', Buffer.alloc(0))).toString(), 'm');
    client.close();
    await server.close();
  });

  it('closes gracefully: calls in flight finish and are answered, new ones get Unavailable, then the connection ends', async () => {
    const hold = gate();
    const entered = gate();
    const { server, client } = await start((s) =>
      s.register('t.S', {
        Hold: async () => {
          entered.open();
          await hold.wait;
          return Buffer.from('done');
        },
        M: () => Buffer.from('m'),
      }),
    );
    const inFlight = client.call('t.S', 'Hold', Buffer.alloc(0));
    await entered.wait;
    const closed = server.close();
    await assert.rejects(client.call('t.S', 'M', Buffer.alloc(0)), {
      code: Code.Unavailable,
      message: 'ttrpc: server closed',
    });
    assert.equal(server.inFlight, 1);
    hold.open();
    assert.equal((await inFlight).toString(), 'done');
    await closed;
    const ended = new Promise<Error | undefined>((r) => client.onClose(r));
    assert.equal(((await ended) as TtrpcError).code, Code.Unavailable);
    await assert.rejects(client.call('t.S', 'M', Buffer.alloc(0)), {
      code: Code.Unavailable,
      message: 'ttrpc: closed',
    });
  });

  it('fails the calls in flight with Unavailable when the client closes or the server goes away', async () => {
    const { server, client, path } = await start((s) =>
      s.register('t.S', { Hold: () => new Promise(() => undefined) }),
    );
    const a = client.call('t.S', 'Hold', Buffer.alloc(0));
    const b = client.call('t.S', 'Hold', Buffer.alloc(0));
    client.close();
    await assert.rejects(a, { code: Code.Unavailable, message: 'ttrpc: closed' });
    await assert.rejects(b, { code: Code.Unavailable });
    const c2 = await TtrpcClient.connect(path);
    const pending = c2.call('t.S', 'Hold', Buffer.alloc(0));
    await server.close({ timeoutMs: 50 }); // the handler never ends: cut off after 50 ms
    await assert.rejects(pending, { code: Code.Unavailable });
    await assert.rejects(TtrpcClient.connect(path), { code: Code.Unavailable });
  });
});
