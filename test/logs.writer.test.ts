// The host log writer and reader without VMs: CRI lines, exact bytes back, rotation with absolute offsets, partial
// lines, recovery after a torn write, loss markers, tail / since / from.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeRecords, type LogRecord, ProcessLogWriter, readLog, recordBytes } from '../src/logs/index.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const streamBytes = (records: LogRecord[], stream: 'stdout' | 'stderr') =>
  Buffer.concat(records.filter((r) => r.stream === stream && !r.marker).map(recordBytes));

describe('host log writer and reader', () => {
  let work: string;
  let n = 0;
  const dir = () => join(work, `p${++n}`);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'sbx-logs-'));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('writes CRI lines: time, stream, F for whole lines and P for a tail without newline', async () => {
    const d = dir();
    const w = await ProcessLogWriter.open(d);
    await w.append('stdout', Buffer.from('hello\nwor'));
    await w.append('stderr', Buffer.from('oops\n'));
    await w.append('stdout', Buffer.from('ld\n\n'));
    await w.close();
    const text = await readFile(join(d, '1.log'), 'utf8');
    const lines = text.split('\n').slice(0, -1);
    assert.equal(lines.length, 5);
    const re = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) (F|P) (.*)$/;
    assert.deepEqual(
      lines.map((l) => re.exec(l)?.slice(1)),
      [
        ['stdout', 'F', 'hello'],
        ['stdout', 'P', 'wor'],
        ['stderr', 'F', 'oops'],
        ['stdout', 'F', 'ld'],
        ['stdout', 'F', ''],
      ],
    );
    const { records, done, next } = await readLog(d);
    assert.equal(streamBytes(records, 'stdout').toString(), 'hello\nworld\n\n');
    assert.equal(streamBytes(records, 'stderr').toString(), 'oops\n');
    assert.equal(next, Buffer.byteLength(text));
    assert.equal(done, false);
    const times = records.map((r) => r.time);
    assert.deepEqual([...times].sort(), times, 'timestamps in order');
    assert.equal(new Set(times).size, 3, 'each chunk has a time of its own');
  });

  it('splits lines longer than 16 KiB into P records and gives binary bytes back exactly', async () => {
    const d = dir();
    const w = await ProcessLogWriter.open(d);
    const data = Buffer.concat([randomBytes(100_000), Buffer.from('\n'), Buffer.alloc(40_000, 0x41)]);
    await w.append('stdout', data);
    await w.close();
    const { records } = await readLog(d);
    assert.ok(records.every((r) => r.content.length <= 16 * 1024));
    assert.equal(sha(streamBytes(records, 'stdout')), sha(data));
  });

  it('rotates at maxFileBytes keeping whole lines, maxFiles files, offsets absolute across files', async () => {
    const d = dir();
    const limits = { maxFileBytes: 64 * 1024, maxFiles: 3 };
    const w = await ProcessLogWriter.open(d, limits);
    const all: Buffer[] = [];
    for (let i = 0; i < 400; i++) {
      const chunk = Buffer.from(`${'x'.repeat(900)} line ${i}\n`);
      all.push(chunk);
      await w.append(i % 3 === 0 ? 'stderr' : 'stdout', chunk);
    }
    const names = (await readdir(d)).filter((f) => f.endsWith('.log')).sort();
    assert.equal(names.length, 3, `kept files: ${names.join(' ')}`);
    let total = 0;
    for (const name of names) {
      const s = await stat(join(d, name));
      assert.ok(s.size <= limits.maxFileBytes, `${name} is ${s.size} bytes`);
      total += s.size;
      const text = await readFile(join(d, name), 'utf8');
      assert.ok(text.endsWith('\n'), 'a file ends with a whole line');
    }
    const { records, first, next } = await readLog(d);
    assert.ok(first > 0, 'the oldest files are gone');
    assert.equal(next - first, total, 'offsets span the kept files exactly');
    assert.equal(next, w.end);
    // Records are contiguous: each starts where the previous ended.
    for (let i = 1; i < records.length; i++) assert.equal(records[i]!.offset, records[i - 1]!.end);
    // The last kept line is the last written; reading on from an old offset reports what rotation took.
    assert.match(records.at(-1)!.content.toString(), /line 399$/);
    const old = await readLog(d, { from: 0 });
    assert.equal(old.skipped, first);
    const mid = records[Math.floor(records.length / 2)]!;
    const rest = await readLog(d, { from: mid.offset });
    assert.deepEqual(
      rest.records.map((r) => r.offset),
      records.filter((r) => r.offset >= mid.offset).map((r) => r.offset),
    );
    // Stream offsets count every byte ever appended, also those rotated away.
    const stderrTotal = all.filter((_, i) => i % 3 === 0).reduce((a, b) => a + b.length, 0);
    assert.equal(w.offset('stderr'), stderrTotal);
    await w.close();
  });

  it('a reader following across rotations misses no line', async () => {
    const d = dir();
    const w = await ProcessLogWriter.open(d, { maxFileBytes: 64 * 1024, maxFiles: 2 });
    const seen: string[] = [];
    let from = 0;
    const expected: string[] = [];
    for (let i = 0; i < 300; i++) {
      expected.push(`${'y'.repeat(500)} ${i}`);
      await w.append('stdout', Buffer.from(`${expected.at(-1)}\n`));
      if (i % 20 === 19) {
        const r = await readLog(d, { from });
        assert.equal(r.skipped, 0);
        seen.push(...r.records.map((x) => x.content.toString()));
        from = r.next;
      }
    }
    assert.deepEqual(seen, expected);
    await w.close();
  });

  it('reopening after a crash cuts a torn line and resumes each stream at the exact byte', async () => {
    const d = dir();
    const limits = { maxFileBytes: 64 * 1024, maxFiles: 3 };
    let w = await ProcessLogWriter.open(d, limits);
    const out = randomBytes(150_000).toString('base64').replace(/.{77}/g, '$&\n');
    await w.append('stdout', Buffer.from(out.slice(0, 120_000)));
    await w.append('stderr', Buffer.from('err one\nerr two'));
    await w.close();
    // What a host crash mid-write leaves: half a line at the end of the newest file.
    const newest = (await readdir(d))
      .filter((f) => f.endsWith('.log'))
      .sort((a, b) => parseInt(b, 10) - parseInt(a, 10))[0]!;
    await appendFile(join(d, newest), '2026-01-01T00:00:00.000000000Z stdout F torn');
    w = await ProcessLogWriter.open(d, limits);
    assert.equal(w.offset('stdout'), 120_000);
    assert.equal(w.offset('stderr'), 'err one\nerr two'.length);
    await w.append('stdout', Buffer.from(out.slice(120_000)));
    await w.append('stderr', Buffer.from('\n'));
    await w.finish();
    assert.equal(w.done, true);
    await w.close();
    const all = await readLog(d, { maxBytes: 10 * 1024 * 1024 });
    assert.equal(all.done, true);
    assert.ok(!all.records.some((r) => r.content.toString() === 'torn'));
    // The oldest file may be gone; what is kept ends exactly with what was written.
    const kept = streamBytes(all.records, 'stdout').toString();
    assert.ok(out.endsWith(kept) && kept.length > 50_000);
    assert.equal(streamBytes(all.records, 'stderr').toString(), 'err one\nerr two\n');
    const again = await ProcessLogWriter.open(d, limits);
    assert.equal(again.done, true);
    await again.close();
  });

  it('records a loss as a marker line that opens a new file, and counts the lost bytes in the stream offset', async () => {
    const d = dir();
    let w = await ProcessLogWriter.open(d);
    await w.append('stdout', Buffer.from('before\n'));
    await w.markLost('stdout', 12345);
    await w.append('stdout', Buffer.from('after\n'));
    assert.equal(w.offset('stdout'), 7 + 12345 + 6);
    await w.close();
    w = await ProcessLogWriter.open(d);
    assert.equal(w.offset('stdout'), 7 + 12345 + 6, 'the marker is not counted as output after a restart');
    await w.close();
    const { records } = await readLog(d);
    assert.deepEqual(
      records.map((r) => [r.stream, r.marker === true, r.content.toString()]),
      [
        ['stdout', false, 'before'],
        [
          'stdout',
          true,
          "[sandboxd: 12345 bytes of stdout lost: the guest's buffer overflowed while the daemon was not reading]",
        ],
        ['stdout', false, 'after'],
      ],
    );
  });

  it('tail counts lines (P records with their F), since filters by time, streams by name', async () => {
    const d = dir();
    const w = await ProcessLogWriter.open(d);
    await w.append('stdout', Buffer.from('a1\na2\na'));
    await w.append('stderr', Buffer.from('e1\n'));
    await w.append('stdout', Buffer.from('3\na4'));
    await w.close();
    const texts = (rs: LogRecord[]) => rs.map((r) => `${r.stream[3]}${r.partial ? 'P' : 'F'}:${r.content}`);
    assert.deepEqual(texts((await readLog(d, { tail: 2 })).records), ['oF:3', 'oP:a4']);
    assert.deepEqual(texts((await readLog(d, { tail: 3 })).records), ['oP:a', 'eF:e1', 'oF:3', 'oP:a4']);
    assert.deepEqual(texts((await readLog(d, { tail: 0 })).records), []);
    assert.deepEqual(texts((await readLog(d, { streams: ['stderr'] })).records), ['eF:e1']);
    const all = (await readLog(d)).records;
    const since = all[3]!.time;
    assert.deepEqual(texts((await readLog(d, { since })).records), ['eF:e1', 'oF:3', 'oP:a4']);
  });

  it('encodes exactly what decodes', () => {
    const buf = encodeRecords('2026-01-01T00:00:00.000000001Z', 'stderr', Buffer.from('a\n\nb'));
    assert.equal(
      buf.toString(),
      '2026-01-01T00:00:00.000000001Z stderr F a\n2026-01-01T00:00:00.000000001Z stderr F \n2026-01-01T00:00:00.000000001Z stderr P b\n',
    );
  });
});
