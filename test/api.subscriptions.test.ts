// Subscriptions: events.event notifications in order, unsubscribe, end with the connection, slow subscribers dropped.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ApiClient, connectApi, type Notification } from '../src/api/index.js';
import type { EventEnvelope } from '../src/events/index.js';
import { type Harness, rawClient, withApi } from './support/api-harness.js';
import { until } from './support/vm.js';

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

const NOISE = 5000;

describe('api subscriptions', () => {
  let h: Harness;
  withApi(
    (api) => {
      h = api.h;
    },
    { client: false, server: { subscriberQueueBytes: 64 * 1024 } },
  );

  it('delivers stored then live events exactly once in seq order, filtered by stream', async () => {
    const c = await connectApi(h.socketPath);
    await c.call('sandbox.create', { id: 's1' });
    await c.call('sandbox.create', { id: 's2' });
    // Listen first: notifications may arrive in the same read as the subscribe response.
    const all: Notification[] = [];
    const off = c.onNotification((n) => {
      if (n.method === 'events.event') all.push(n);
    });
    /** Every notification before the marker: a delete of s1 after the rest, whose event must come last. */
    const untilMarker = async () => {
      await c.call('sandbox.delete', { id: 's1' });
      const marker = async () =>
        all.some((n) => (n.params.event as EventEnvelope).type === 'SandboxDeleted') ? true : undefined;
      await until('the SandboxDeleted marker', 5000, marker);
      off();
      return all;
    };
    const sub = (await c.call('events.subscribe', { fromSeq: 1, stream: 'sandbox-s1' })) as {
      subscription: string;
    };
    await c.call('sandbox.start', { id: 's1' });
    await c.call('sandbox.start', { id: 's2' });
    await c.call('sandbox.stop', { id: 's1' });
    await h.runtime.idle();
    const stored = (await h.events()).filter((e) => e.stream === 'sandbox-s1');
    const ns = await untilMarker();
    const events = ns.map((n) => n.params.event as EventEnvelope);
    assert.deepEqual(events.slice(0, stored.length), stored, 'stored then live, each once, in seq order');
    assert.ok(
      events.slice(stored.length).every((e) => e.type.startsWith('SandboxDelete')),
      'nothing but the marker after them',
    );
    assert.deepEqual(
      ['SandboxCreated', 'SandboxStarted', 'SandboxStopped'].filter((t) => events.some((e) => e.type === t)),
      ['SandboxCreated', 'SandboxStarted', 'SandboxStopped'],
    );
    assert.ok(ns.every((n) => n.params.subscription === sub.subscription));
    for (let i = 1; i < events.length; i++) assert.ok(events[i]!.seq > events[i - 1]!.seq);
    c.close();
  });

  it('stops notifications after events.unsubscribe', async () => {
    const c = await connectApi(h.socketPath);
    const { subscription } = (await c.call('events.subscribe', {})) as { subscription: string };
    // A second subscription, made after the first, is told of every event after it: the barrier.
    const { subscription: marker } = (await c.call('events.subscribe', {})) as { subscription: string };
    const seen: string[] = [];
    c.onNotification((n) => {
      seen.push(
        `${n.params.subscription === marker ? 'marker' : 'other'} ${(n.params.event as EventEnvelope).stream}`,
      );
    });
    assert.deepEqual(await c.call('events.unsubscribe', { subscription }), { unsubscribed: true });
    await c.call('sandbox.create', { id: 'unsub' });
    await c.call('sandbox.create', { id: 'unsub-marker' });
    await until('the marker event', 5000, async () =>
      seen.includes('marker sandbox-unsub-marker') ? true : undefined,
    );
    assert.deepEqual(seen, ['marker sandbox-unsub', 'marker sandbox-unsub-marker']);
    assert.deepEqual(await c.call('events.unsubscribe', { subscription }), { unsubscribed: false });
    c.close();
  });

  it('ends a connection’s subscriptions when it closes, and other clients go on', async () => {
    const a = await connectApi(h.socketPath);
    const b = await connectApi(h.socketPath);
    await a.call('events.subscribe', {});
    await b.call('events.subscribe', {});
    a.close();
    // Only b is left once the server has seen a's close (other tests' clients are closed too).
    await until('the server saw a close', 5000, async () => (h.server.connections === 1 ? true : undefined));
    const got = collect(b, 'events.event', (ns) => ns.length >= 1);
    await b.call('sandbox.create', { id: 'after-close' });
    assert.equal(((await got)[0]!.params.event as EventEnvelope).stream, 'sandbox-after-close');
    b.close();
  });

  it('drops a subscriber that stops reading, with a notice, and keeps serving others', async () => {
    const slow = await rawClient(h.socketPath);
    const fast = await connectApi(h.socketPath);
    const sub = (await slow.request({ jsonrpc: '2.0', id: 1, method: 'events.subscribe', params: {} })) as {
      result: { subscription: string };
    };
    slow.socket.pause();
    // 5,000 events of about 600 bytes: far more than the 64 KiB the server may queue for the connection.
    const pad = { pad: 'x'.repeat(400) };
    await Promise.all(
      Array.from({ length: NOISE }, (_, i) => h.runtime.createSandbox(`noise${i}`, { labels: pad })),
    );
    // The fast client is unaffected.
    const info = (await fast.call('daemon.info')) as { events: { lastSeq: number } };
    assert.ok(info.events.lastSeq >= NOISE);
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
    assert.ok(delivered < NOISE, `only part was delivered (${delivered})`);
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
    await c.call('container.create', { sandboxId: 'out', id: 'c', bundle: h.apiBundle });
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
    // The fake world's agent prints one line to stdout and nothing to stderr.
    assert.equal(text('stdout'), 'stdout of out/c/\n');
    assert.equal(text('stderr'), '');
    assert.deepEqual(
      ns
        .filter((n) => n.method === 'exec.outputEnd')
        .map((n) => n.params.stream)
        .sort(),
      ['stderr', 'stdout'],
    );
    h.world.exitProcess('out', 'c', '', { exitCode: 3 });
    assert.equal(
      (await c.call<{ exitCode: number }>('container.wait', { sandboxId: 'out', id: 'c' })).exitCode,
      3,
    );
    const once = (await c.call('exec.output', {
      sandboxId: 'out',
      containerId: 'c',
      execId: '',
      stream: 'stdout',
    })) as {
      stdout: string;
      complete: boolean;
    };
    assert.equal(Buffer.from(once.stdout, 'base64').toString(), 'stdout of out/c/\n');
    assert.equal(once.complete, true);
    c.close();
  });
});
