// sandboxctl's argument parsers for event tooling: --until points (seq, version, time) and --since (time or duration).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSince, parseUntil } from '../src/cli/events.js';

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
