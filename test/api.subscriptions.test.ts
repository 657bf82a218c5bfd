// Subscriptions: events.event notifications in order, unsubscribe, end with the connection, slow subscribers dropped.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ApiClient, connectApi, type Notification } from '../src/api/index.js';
import type { EventEnvelope } from '../src/events/index.js';
import { type Harness, rawClient, startHarness } from './support/api-harness.js';

function collect(c: ApiClient, method: string, until: (ns: Notification[]) => boolean, ms = 5000) {
  return new Promise<Notification[]>((resolve, reject) => {
    const got: Notification[] = [];
    const timer = setTimeout(() => reject(new Error(`only ${got.length} ${method} notifications`)), ms);
    const off = c.onNotification((n) => {
      if (n.method !== method && method !== '*') return;
      got.push(n);
      if (until(got)) {
        clearTimeout(timer);
        off();
        resolve(got);
      }
    });
  });
}

describe('api subscriptions', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ server: { subscriberQueueBytes: 64 * 1024 } });
  });
  after(async () => {
    await h.close();
  });

  it('delivers stored then live events exactly once in seq order, filtered by stream', async () => {
    const c = await connectApi(h.socketPath);
    await c.call('sandbox.create', { id: 's1' });
    await c.call('sandbox.create', { id: 's2' });
    // Listen first: notifications may arrive in the same read as the subscribe response.
    const got = collect(c, 'events.event', (ns) => ns.length === 3);
    const sub = (await c.call('events.subscribe', { fromSeq: 1, stream: 'sandbox-s1' })) as {
      subscription: string;
    };
    await c.call('sandbox.start', { id: 's1' });
    await c.call('sandbox.start', { id: 's2' });
    await c.call('sandbox.stop', { id: 's1' });
    const ns = await got;
    const events = ns.map((n) => n.params.event as EventEnvelope);
    assert.deepEqual(
      events.map((e) => e.type),
      ['SandboxCreated', 'SandboxStarted', 'SandboxStopped'],
    );
    assert.ok(events.every((e) => e.stream === 'sandbox-s1'));
    assert.ok(ns.every((n) => n.params.subscription === sub.subscription));
    for (let i = 1; i < events.length; i++) assert.ok(events[i]!.seq > events[i - 1]!.seq);
    c.close();
  });

  it('stops notifications after events.unsubscribe', async () => {
    const c = await connectApi(h.socketPath);
    const { subscription } = (await c.call('events.subscribe', {})) as { subscription: string };
    let after = 0;
    c.onNotification(() => {
      after++;
    });
    assert.deepEqual(await c.call('events.unsubscribe', { subscription }), { unsubscribed: true });
    await c.call('sandbox.create', { id: 'unsub' });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(after, 0);
    assert.deepEqual(await c.call('events.unsubscribe', { subscription }), { unsubscribed: false });
    c.close();
  });

  it('ends a connection’s subscriptions when it closes, and other clients go on', async () => {
    const a = await connectApi(h.socketPath);
    const b = await connectApi(h.socketPath);
    await a.call('events.subscribe', {});
    await b.call('events.subscribe', {});
    a.close();
    await new Promise((r) => setTimeout(r, 50));
    const got = collect(b, 'events.event', (ns) => ns.length >= 1);
    await b.call('sandbox.create', { id: 'after-close' });
    assert.equal(((await got)[0]!.params.event as EventEnvelope).stream, 'sandbox-after-close');
    // Only b is left once the server has seen a's close (other tests' clients are closed too).
    for (let i = 0; i < 100 && h.server.connections > 1; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(h.server.connections, 1);
    b.close();
  });

  it('drops a subscriber that stops reading, with a notice, and keeps serving others', async () => {
    const slow = await rawClient(h.socketPath);
    const fast = await connectApi(h.socketPath);
    const sub = (await slow.request({ jsonrpc: '2.0', id: 1, method: 'events.subscribe', params: {} })) as {
      result: { subscription: string };
    };
    slow.socket.pause();
    const fastGot = collect(fast, '*', () => false, 100).catch(() => undefined);
    await h.runtime.noise(20_000);
    // The fast client is unaffected.
    const info = (await fast.call('daemon.info')) as { events: { lastSeq: number } };
    assert.ok(info.events.lastSeq >= 20_000);
    await fastGot;
    slow.socket.resume();
    let notice: { method?: string; params?: Record<string, unknown> } | undefined;
    let delivered = 0;
    for (;;) {
      const line = (await slow.next(5000)) as { method?: string; params?: Record<string, unknown> };
      if (line.method === 'subscription.dropped') {
        notice = line;
        break;
      }
      delivered++;
    }
    assert.ok(delivered < 20_000, `only part was delivered (${delivered})`);
    assert.equal(notice.params?.subscription, sub.result.subscription);
    assert.equal(notice.params?.kind, 'events');
    assert.match(String(notice.params?.reason), /slow consumer/);
    assert.equal(typeof notice.params?.lastSeq, 'number');
    // The slow connection itself still answers.
    const r = (await slow.request({
      jsonrpc: '2.0',
      id: 2,
      method: 'events.unsubscribe',
      params: { subscription: sub.result.subscription },
    })) as {
      result: { unsubscribed: boolean };
    };
    assert.equal(r.result.unsubscribed, false, 'the subscription was already ended');
    slow.close();
    fast.close();
  });

  it('streams a process’s output with exec.output follow, then an end per stream', async () => {
    const c = await connectApi(h.socketPath);
    await c.call('sandbox.create', { id: 'out' });
    await c.call('sandbox.start', { id: 'out' });
    await h.runtime.createContainer({
      sandboxId: 'out',
      id: 'c',
      bundle: '/b',
      process: { args: ['exit', '3'] },
    });
    const got = collect(c, '*', (ns) => ns.filter((n) => n.method === 'exec.outputEnd').length === 2);
    const { subscription } = (await c.call('exec.output', {
      sandboxId: 'out',
      containerId: 'c',
      execId: '',
      follow: true,
    })) as { subscription: string };
    await c.call('container.start', { sandboxId: 'out', id: 'c' });
    const ns = await got;
    assert.ok(ns.every((n) => n.params.subscription === subscription));
    const text = (s: string) =>
      ns
        .filter((n) => n.method === 'exec.output' && n.params.stream === s)
        .map((n) => Buffer.from(String(n.params.data), 'base64').toString())
        .join('');
    assert.equal(text('stdout'), 'exit 3\n');
    assert.equal(text('stderr'), 'exiting with 3\n');
    assert.deepEqual(await c.call('container.wait', { sandboxId: 'out', id: 'c' }), { exitCode: 3 });
    const once = (await c.call('exec.output', {
      sandboxId: 'out',
      containerId: 'c',
      execId: '',
      stream: 'stdout',
    })) as {
      stdout: string;
      complete: boolean;
    };
    assert.equal(Buffer.from(once.stdout, 'base64').toString(), 'exit 3\n');
    assert.equal(once.complete, true);
    c.close();
  });
});
