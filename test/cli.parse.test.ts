// sandboxctl argument parsers: event tooling (--until, --since) and network flags (--network, -p).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSince, parseUntil } from '../src/cli/events.js';
import { collectPort, collectVolume, networkConfig } from '../src/cli/network.js';

describe('sandboxctl event arguments', () => {
  it('reads --until as a seq, a version or a time', () => {
    assert.deepEqual(parseUntil('12'), { seq: 12 });
    assert.deepEqual(parseUntil('seq:12'), { seq: 12 });
    assert.deepEqual(parseUntil('v3'), { version: 3 });
    assert.deepEqual(parseUntil('version:3'), { version: 3 });
    assert.deepEqual(parseUntil('2026-01-02T03:04:05Z'), { time: Date.parse('2026-01-02T03:04:05Z') });
  });

  it('refuses an --until that is none of those, naming the option', () => {
    assert.throws(
      () => parseUntil('soon'),
      (e: { details: { field: string } }) => e.details.field === 'until',
    );
  });

  it('reads --since as a duration back from now or an ISO time', () => {
    const t = Date.parse(parseSince('5m'));
    assert.ok(Math.abs(Date.now() - 5 * 60_000 - t) < 2000);
    assert.equal(parseSince('2026-01-02T03:04:05Z'), '2026-01-02T03:04:05.000Z');
    assert.throws(() => parseSince('last tuesday'));
  });
});

describe('sandboxctl network arguments', () => {
  it('reads -p as docker does: [address:]host:guest[/protocol], repeatable', () => {
    const ports = collectPort('0.0.0.0:5353:53/udp', collectPort('8080:80'));
    assert.deepEqual(ports, [
      { hostPort: 8080, guestPort: 80 },
      { hostPort: 5353, guestPort: 53, protocol: 'udp', hostAddress: '0.0.0.0' },
    ]);
    assert.throws(() => collectPort('80'), /not \[address:\]hostPort:guestPort/);
    assert.throws(() => collectPort('8080:80/sctp'));
  });

  it('turns on the user network when ports are published, and leaves the default alone otherwise', () => {
    assert.deepEqual(networkConfig({}), {});
    assert.deepEqual(networkConfig({ publish: [{ hostPort: 1, guestPort: 2 }] }), {
      network: 'user',
      ports: [{ hostPort: 1, guestPort: 2 }],
    });
    assert.deepEqual(networkConfig({ network: 'none' }), { network: 'none' });
  });
});

describe('sandboxctl volume arguments', () => {
  it('reads -v as docker does: source:destination[:ro|rw], the source made absolute', () => {
    assert.deepEqual(collectVolume('/srv/data:/data:ro', collectVolume('rel/dir:/work')), [
      { source: `${process.cwd()}/rel/dir`, destination: '/work' },
      { source: '/srv/data', destination: '/data', readonly: true },
    ]);
    assert.throws(() => collectVolume('/only-source'), /not source:destination/);
    assert.throws(() => collectVolume('/a:/b:rx'));
  });
});
