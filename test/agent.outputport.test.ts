// The output port's two ends on the host: the guest's OutputPort writing frames from output buffers into an emulated
// chardev, the host's OutputPortReader parsing them (no VM: the real-VM path is in e2e.logs and bench:agent).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import {
  encodeOutputFrameHeader,
  OUTPUT_ACK,
  OutputPortReader,
  type PortSubscriber,
} from '../src/agent/index.js';
import { OutputBuffer, OutputPort, openOutputPortDevice } from '../src/guest/index.js';
import { OutputPortEmulator } from './fixtures/output-port-emulator.js';

const logger = pino({ level: 'silent' });

/** Collects one subscription's bytes by offset; resolves at its END frame, rejects when the session is lost. */
function collector(): {
  subscriber: PortSubscriber;
  ended: Promise<number>;
  bytes: () => Buffer;
  next: () => number;
} {
  const parts: Buffer[] = [];
  let next = -1;
  let resolveEnd!: (offset: number) => void;
  let rejectEnd!: (err: Error) => void;
  const ended = new Promise<number>((resolve, reject) => {
    resolveEnd = resolve;
    rejectEnd = reject;
  });
  ended.catch(() => {});
  return {
    subscriber: {
      data: (offset, data) => {
        if (next >= 0) assert.equal(offset, next, 'pieces arrive in order, without gaps');
        next = offset + data.length;
        parts.push(Buffer.from(data));
      },
      end: (offset) => resolveEnd(offset),
      lost: (reason) => rejectEnd(new Error(reason)),
    },
    ended,
    bytes: () => Buffer.concat(parts),
    next: () => next,
  };
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('output port (guest frames, host reader)', { timeout: 60_000 }, () => {
  let work: string;
  let emulator: OutputPortEmulator;
  let port: OutputPort;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'sbx-outport-'));
    emulator = await OutputPortEmulator.listen(join(work, 'output.sock'));
    port = new OutputPort(emulator.device, logger);
  });

  after(async () => {
    await port?.close();
    await emulator?.close();
    await rm(work, { recursive: true, force: true });
  });

  const openReader = () =>
    OutputPortReader.open({
      socketPath: emulator.socketPath,
      logger,
      openSession: (token) => port.open(token),
    });

  it('carries two streams interleaved, byte-identical, each ended at its last offset', async () => {
    const reader = await openReader();
    const stdout = new OutputBuffer(8 * 1024 * 1024, 0);
    const stderr = new OutputBuffer(8 * 1024 * 1024, 0);
    const out = collector();
    const err = collector();
    const outSub = reader.subscribe(out.subscriber);
    const errSub = reader.subscribe(err.subscriber);
    const signal = new AbortController().signal;
    const streaming = Promise.all([
      port.stream(reader.token, outSub, stdout, 0, signal),
      port.stream(reader.token, errSub, stderr, 0, signal),
    ]);
    const written = { out: [] as Buffer[], err: [] as Buffer[] };
    for (let i = 0; i < 200; i++) {
      const a = randomBytes(1 + ((i * 7919) % 40_000));
      const b = randomBytes(1 + ((i * 104_729) % 3_000));
      stdout.append(a);
      stderr.append(b);
      written.out.push(a);
      written.err.push(b);
      if (i % 20 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    stdout.finish();
    stderr.finish();
    assert.deepEqual(await streaming, [true, true]);
    const expectOut = Buffer.concat(written.out);
    const expectErr = Buffer.concat(written.err);
    assert.equal(await out.ended, expectOut.length);
    assert.equal(await err.ended, expectErr.length);
    assert.equal(sha(out.bytes()), sha(expectOut));
    assert.equal(sha(err.bytes()), sha(expectErr));
    reader.close();
  });

  it('drops what an earlier host left before the ACK, and a new session ends the old one’s reads', async () => {
    const first = await openReader();
    const buffer = new OutputBuffer(1024 * 1024, 0);
    const seen = collector();
    const sub = first.subscribe(seen.subscriber);
    const streaming = port.stream(first.token, sub, buffer, 0, new AbortController().signal);
    buffer.append(Buffer.from('before the crash\n'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(seen.bytes().toString(), 'before the crash\n');
    // The daemon dies; the guest writes on (its write waits for a host), then a new daemon comes.
    first.close();
    await assert.rejects(seen.ended, /closed by the host/);
    buffer.append(Buffer.from('while nobody read\n'));
    const second = await openReader();
    assert.equal(await streaming, false, 'the old session’s read ends with the new session');
    assert.equal(port.isCurrent(first.token), false);
    // The new host resumes from the offset after what it already had: every byte once.
    const again = collector();
    const resumed = port.stream(
      second.token,
      second.subscribe(again.subscriber),
      buffer,
      seen.next(),
      new AbortController().signal,
    );
    buffer.append(Buffer.from('after the restart\n'));
    buffer.finish();
    assert.equal(await resumed, true);
    await again.ended;
    assert.equal(
      seen.bytes().toString() + again.bytes().toString(),
      'before the crash\nwhile nobody read\nafter the restart\n',
    );
    second.close();
  });

  it('refuses a read for a token that is not the current session', async () => {
    const reader = await openReader();
    await assert.rejects(
      port.stream(randomBytes(16), 1, new OutputBuffer(), 0, new AbortController().signal),
      /not the current output port session/,
    );
    reader.close();
  });

  it('treats a frame with a bad header as a broken session (every read told), not as data', async () => {
    const reader = await openReader();
    const seen = collector();
    reader.subscribe(seen.subscriber);
    // Bytes that are not a frame, written straight to the host side after the ACK.
    await emulator.device.writev([Buffer.alloc(24, 0x41)]);
    await assert.rejects(seen.ended, /bad frame magic/);
    assert.equal(reader.closed, true);
    assert.equal(seen.bytes().length, 0);
  });

  it('writes everything through a device that takes a little at a time (a FIFO)', async () => {
    const fifo = join(work, 'port.fifo');
    execFileSync('mkfifo', [fifo]);
    // Each open of a FIFO waits for the other end: start both together.
    const readerOpen = open(fifo, 'r');
    const device = await openOutputPortDevice(fifo);
    const reader = await readerOpen;
    const payload = [
      randomBytes(100),
      randomBytes(700_000),
      Buffer.alloc(0),
      randomBytes(1_500_000),
      randomBytes(3),
    ];
    const read = (async () => {
      const chunks: Buffer[] = [];
      // Small reads: the writer meets a full FIFO many times over.
      for await (const chunk of reader.createReadStream({ highWaterMark: 4096 }))
        chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    })();
    await device.writev(payload);
    await device.close();
    assert.equal(sha(await read), sha(Buffer.concat(payload)));
  });

  it('encodes offsets past 4 GiB', () => {
    const header = encodeOutputFrameHeader({
      subscription: 3,
      kind: 'data',
      offset: 5 * 2 ** 32 + 17,
      length: 9,
    });
    assert.equal(header.length, 24);
    assert.equal(header.readUInt32BE(16), 5);
    assert.equal(header.readUInt32BE(20), 17);
    assert.ok(OUTPUT_ACK.length > 0);
  });
});
