// ttrpc framing: header layout, frames split or coalesced in any way, oversized frames skipped without losing sync.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  MAX_MESSAGE_LENGTH,
  MessageType,
} from '../src/ttrpc/index.js';

function collect() {
  const frames: Frame[] = [];
  const over: { streamId: number; length: number }[] = [];
  const d = new FrameDecoder(
    (f) => frames.push(f),
    (o) => over.push(o),
  );
  return { d, frames, over };
}

describe('ttrpc frames', () => {
  it('writes the 10-byte big-endian header ttrpc reads', () => {
    const f = encodeFrame(0x01020305, MessageType.Response, 0x04, Buffer.from('abc'));
    assert.deepEqual([...f.subarray(0, 10)], [0, 0, 0, 3, 1, 2, 3, 5, 2, 4]);
    assert.equal(f.subarray(10).toString(), 'abc');
  });

  it('decodes the same frames whatever the chunking: byte by byte, split headers, many per chunk', () => {
    const wire = Buffer.concat([
      encodeFrame(1, MessageType.Request, 0, Buffer.from('first')),
      encodeFrame(3, MessageType.Request, 0, Buffer.alloc(0)),
      encodeFrame(5, MessageType.Data, 1, Buffer.alloc(70_000, 7)),
    ]);
    for (const size of [1, 3, 9, 10, 11, 4096, wire.length]) {
      const { d, frames } = collect();
      for (let i = 0; i < wire.length; i += size) d.push(wire.subarray(i, i + size));
      assert.deepEqual(
        frames.map((f) => [f.streamId, f.type, f.flags, f.data.length]),
        [
          [1, 1, 0, 5],
          [3, 1, 0, 0],
          [5, 3, 1, 70_000],
        ],
        `chunk size ${size}`,
      );
      assert.equal(frames[0]?.data.toString(), 'first');
      assert.ok(frames[2]?.data.every((b) => b === 7));
    }
  });

  it('reports an oversized frame, skips its data as it streams past and decodes the next frame', () => {
    const { d, frames, over } = collect();
    const head = Buffer.alloc(10);
    head.writeUInt32BE(MAX_MESSAGE_LENGTH + 1, 0);
    head.writeUInt32BE(7, 4);
    head.writeUInt8(MessageType.Request, 8);
    d.push(head);
    assert.deepEqual(over, [{ streamId: 7, type: 1, length: MAX_MESSAGE_LENGTH + 1 }]);
    const body = Buffer.alloc(MAX_MESSAGE_LENGTH + 1, 0xff);
    const next = encodeFrame(9, MessageType.Request, 0, Buffer.from('after'));
    d.push(body.subarray(0, 1000));
    d.push(Buffer.concat([body.subarray(1000), next.subarray(0, 4)]));
    d.push(next.subarray(4));
    assert.deepEqual(
      frames.map((f) => [f.streamId, f.data.toString()]),
      [[9, 'after']],
    );
  });

  it('refuses to encode data over 4 MiB', () => {
    assert.throws(
      () => encodeFrame(1, 1, 0, Buffer.alloc(MAX_MESSAGE_LENGTH + 1)),
      /exceed maximum message size/,
    );
    assert.equal(encodeFrame(1, 1, 0, Buffer.alloc(MAX_MESSAGE_LENGTH)).length, MAX_MESSAGE_LENGTH + 10);
  });
});
