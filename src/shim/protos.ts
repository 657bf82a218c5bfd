// containerd's own .proto files, loaded in place from Debian's Go source packages (see scripts/setup.sh):
// the shim's Task service, the task events, the ttrpc Events service and cgroups v2 metrics.
import { existsSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import protobuf from 'protobufjs';

const GOCODE = process.env.SANDBOXD_GOCODE ?? '/usr/share/gocode/src';

/** Where imports are looked up, in order (`gogoproto/gogo.proto`, `google/protobuf/*.proto`, `github.com/…`). */
export const PROTO_INCLUDE_DIRS = [
  GOCODE,
  join(GOCODE, 'github.com/gogo/protobuf'),
  join(GOCODE, 'github.com/gogo/protobuf/protobuf'),
];

const FILES = [
  'github.com/containerd/containerd/runtime/v2/task/shim.proto',
  'github.com/containerd/containerd/api/events/task.proto',
  'github.com/containerd/containerd/api/services/ttrpc/events/v1/events.proto',
  'github.com/containerd/cgroups/v2/stats/metrics.proto',
];

export const TASK_SERVICE = 'containerd.task.v2.Task';
export const EVENTS_SERVICE = 'containerd.services.events.ttrpc.v1.Events';

function load(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (isAbsolute(target)) return target;
    for (const dir of PROTO_INCLUDE_DIRS) {
      const p = join(dir, target);
      if (existsSync(p)) return p;
    }
    return target;
  };
  try {
    root.loadSync(FILES, { keepCase: false });
  } catch (err) {
    throw new Error(
      `containerd protos not loadable from ${GOCODE} (apt packages golang-github-containerd-containerd-dev, ` +
        `golang-github-containerd-cgroups-dev, golang-github-gogo-protobuf-dev): ${(err as Error).message}`,
    );
  }
  root.resolveAll();
  return root;
}

let cached: protobuf.Root | undefined;
/** The loaded root (once per process). */
export function protos(): protobuf.Root {
  cached ??= load();
  return cached;
}

export function messageType(fullName: string): protobuf.Type {
  return protos().lookupType(fullName);
}

/** Encodes a plain object (camelCase fields) as `fullName`; unknown fields are an error, not silently dropped. */
export function encode(fullName: string, value: Record<string, unknown>): Uint8Array {
  const t = messageType(fullName);
  const problem = t.verify(value);
  if (problem) throw new Error(`${fullName}: ${problem}`);
  return t.encode(t.fromObject(value)).finish();
}

/** Decodes bytes as `fullName` into a plain object: longs as numbers, bytes as Buffers, defaults filled. */
export function decode<T = Record<string, unknown>>(fullName: string, bytes: Uint8Array): T {
  const t = messageType(fullName);
  return t.toObject(t.decode(bytes), { longs: Number, bytes: Buffer, defaults: true, arrays: true }) as T;
}

/**
 * A google.protobuf.Any as containerd's typeurl writes it: the type URL is the bare full name.
 * protobufjs takes google/protobuf/* from its bundled copies, whose field names keep their snake case.
 */
export interface AnyMessage {
  readonly type_url: string;
  readonly value: Uint8Array;
}

export function packAny(fullName: string, value: Record<string, unknown>): AnyMessage {
  return { type_url: fullName, value: encode(fullName, value) };
}

export function unpackAny<T = Record<string, unknown>>(any: AnyMessage): { type: string; value: T } {
  const type = any.type_url.replace(/^.*\//, '');
  return { type, value: decode<T>(type, any.value) };
}

/** google.protobuf.Timestamp of a date (ms since the epoch). */
export function timestamp(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}
