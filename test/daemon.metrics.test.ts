// Prometheus metrics of the daemon (over the FAKE world): HTTP /metrics and daemon.metrics, counts that follow what happened.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { type ApiClient, connectApi } from '../src/api/index.js';
import { type Daemon, parseListenAddress, startDaemon } from '../src/daemon/daemon.js';
import { InvalidArgument } from '../src/errors/index.js';
import { fakeImage } from './support/actors-harness.js';
import { FakeAgent, FakeHypervisor, FakeWorld } from './support/fake-world.js';
import { freePort } from './support/vm.js';

/** The value of one sample line (`name{labels} value`), or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('daemon metrics', () => {
  let dir: string;
  let port: number;
  let daemon: Daemon;
  let client: ApiClient;
  const world = new FakeWorld();
  const parts = { hypervisor: new FakeHypervisor(world), agent: new FakeAgent(world), image: fakeImage };
  const logger = pino({ level: 'silent' });
  const scrape = async (path = '/metrics') => fetch(`http://127.0.0.1:${port}${path}`);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-metrics-'));
    port = await freePort();
    daemon = await startDaemon({
      stateDir: join(dir, 'state'),
      socketPath: join(dir, 'sandboxd.sock'),
      metricsAddress: `127.0.0.1:${port}`,
      logger,
      parts,
    });
    client = await connectApi(join(dir, 'sandboxd.sock'));
  });

  after(async () => {
    client?.close();
    await daemon?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves Prometheus text at /metrics that follows sandboxes, the log writer and API calls', async () => {
    await client.call('sandbox.create', { id: 'm1' });
    await client.call('sandbox.start', { id: 'm1' });
    await client.call('sandbox.create', { id: 'm2' });
    await client.call('sandbox.start', { id: 'nope' }).catch(() => undefined);
    const res = await scrape();
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    assert.match(text, /^# TYPE sandboxd_sandboxes gauge$/m);
    assert.equal(sample(text, 'sandboxd_sandboxes{state="running"}'), 1);
    assert.equal(sample(text, 'sandboxd_sandboxes{state="created"}'), 1);
    assert.equal(sample(text, 'sandboxd_api_requests_total{method="sandbox.create",outcome="ok"}'), 2);
    assert.equal(sample(text, 'sandboxd_api_requests_total{method="sandbox.start",outcome="ok"}'), 1);
    assert.equal(sample(text, 'sandboxd_api_requests_total{method="sandbox.start",outcome="error"}'), 1);
    assert.ok((sample(text, 'sandboxd_event_log_fsyncs_total') ?? 0) > 0);
    assert.ok((sample(text, 'sandboxd_event_log_events_total') ?? 0) >= 6);
    const info = await client.call<{ events: { lastSeq: number } }>('daemon.info');
    assert.equal(sample(text, 'sandboxd_event_log_last_seq'), info.events.lastSeq);
    assert.match(text, /^sandboxd_info\{version="[^"]+",accel="tcg"\} 1$/m);
  });

  it('answers daemon.metrics over the API with the same series, and 404 elsewhere over HTTP', async () => {
    const { metrics } = await client.call<{ metrics: string }>('daemon.metrics');
    assert.equal(sample(metrics, 'sandboxd_sandboxes{state="running"}'), 1);
    assert.match(metrics, /^sandboxd_api_connections 1$/m);
    assert.equal((await scrape('/')).status, 404);
  });

  it('refuses a metrics address it cannot use, naming it, and leaves the state dir usable', async () => {
    const stateDir = join(dir, 'state2');
    const socketPath = join(dir, 'other.sock');
    await assert.rejects(
      startDaemon({ stateDir, socketPath, metricsAddress: 'here', logger, parts }),
      (err: InvalidArgument) => err instanceof InvalidArgument && err.details.field === 'metricsAddress',
    );
    await assert.rejects(
      startDaemon({ stateDir, socketPath, metricsAddress: `127.0.0.1:${port}`, logger, parts }),
      /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/,
    );
    const again = await startDaemon({ stateDir, socketPath, logger, parts });
    await again.close();
  });

  it('reads host:port, [v6]:port and a bare port', () => {
    assert.deepEqual(parseListenAddress('0.0.0.0:9464'), { host: '0.0.0.0', port: 9464 });
    assert.deepEqual(parseListenAddress('[::1]:9464'), { host: '::1', port: 9464 });
    assert.deepEqual(parseListenAddress('9464'), { host: '127.0.0.1', port: 9464 });
    assert.throws(() => parseListenAddress('localhost:99999'), InvalidArgument);
  });
});
