// LevelDB key layout: ordered byte strings, so iterators give global and per-stream order without sorting.
//
//   'e' seq:u64be                       → event frame            (the global log)
//   's' stream:utf8 0x00 version:u64be  → seq:u64be              (per-stream index)
//   'n' stream:utf8                     → snapshot frame         (cache only)
//   'm' name:utf8                       → meta frame             (format version)
// Changing this layout needs a new `layoutVersion` and a migration.

export const layoutVersion = 1;

// Stream heads are not stored: open() finds them by a skip-scan of the stream index.
export const prefix = { event: 0x65, streamIndex: 0x73, snapshot: 0x6e, meta: 0x6d } as const;

/** Numbers here stay below 2^53: written as u64 big-endian through two u32 halves. */
function writeU64(buf: Buffer, value: number, offset: number): void {
  buf.writeUInt32BE(Math.floor(value / 0x1_0000_0000), offset);
  buf.writeUInt32BE(value >>> 0, offset + 4);
}

export function readU64(buf: Uint8Array, offset = 0): number {
  const view = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return view.readUInt32BE(offset) * 0x1_0000_0000 + view.readUInt32BE(offset + 4);
}

export function u64(value: number): Buffer {
  const buf = Buffer.allocUnsafe(8);
  writeU64(buf, value, 0);
  return buf;
}

export function eventKey(seq: number): Buffer {
  const key = Buffer.allocUnsafe(9);
  key[0] = prefix.event;
  writeU64(key, seq, 1);
  return key;
}

export function seqOfEventKey(key: Uint8Array): number {
  return readU64(key, 1);
}

/** Bounds of the whole event range, for iterators. */
export const eventKeyRange = { gte: Buffer.from([prefix.event]), lt: Buffer.from([prefix.event + 1]) };

export function streamIndexKey(stream: string, version: number): Buffer {
  const nameLength = Buffer.byteLength(stream, 'utf8');
  const key = Buffer.allocUnsafe(1 + nameLength + 1 + 8);
  key[0] = prefix.streamIndex;
  key.write(stream, 1, nameLength, 'utf8');
  key[1 + nameLength] = 0;
  writeU64(key, version, 2 + nameLength);
  return key;
}

/** Decodes a stream index key into its stream and version. */
export function parseStreamIndexKey(key: Uint8Array): { stream: string; version: number } {
  const buf = Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  const nameEnd = buf.length - 9;
  return { stream: buf.toString('utf8', 1, nameEnd), version: readU64(buf, nameEnd + 1) };
}

/** The version of a stream index key (its last 8 bytes). */
export function parseStreamIndexVersion(key: Buffer): number {
  return readU64(key, key.length - 8);
}

/** Range of one stream's index entries with version ≥ fromVersion. */
export function streamIndexRange(stream: string, fromVersion: number): { gte: Buffer; lt: Buffer } {
  const gte = streamIndexKey(stream, fromVersion);
  const lt = Buffer.from(gte.subarray(0, gte.length - 8));
  lt[lt.length - 1] = 1; // the NUL separator + 1: just past every version of this stream
  return { gte, lt };
}

export const streamIndexKeyRange = {
  gte: Buffer.from([prefix.streamIndex]),
  lt: Buffer.from([prefix.streamIndex + 1]),
};

function named(tag: number, name: string): Buffer {
  const nameLength = Buffer.byteLength(name, 'utf8');
  const key = Buffer.allocUnsafe(1 + nameLength);
  key[0] = tag;
  key.write(name, 1, nameLength, 'utf8');
  return key;
}

export const snapshotKey = (stream: string): Buffer => named(prefix.snapshot, stream);
export const metaKey = (name: string): Buffer => named(prefix.meta, name);

export function nameOfKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('utf8', 1);
}

/** Range of keys under `tag` whose name starts with `namePrefix`. */
export function namedRange(tag: number, namePrefix = ''): { gte: Buffer; lt: Buffer } {
  const gte = named(tag, namePrefix);
  // Smallest key greater than every key starting with gte: increment the last byte below 0xff.
  let end = gte.length;
  while (end > 0 && gte[end - 1] === 0xff) end--;
  const lt = Buffer.from(gte.subarray(0, end));
  lt[end - 1] = lt[end - 1]! + 1;
  return { gte, lt };
}
