// The agent protocol as TypeScript: decoded message shapes of proto/agent.proto, the method table, the loader, the resync handshake.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MethodDefinition } from '@grpc/grpc-js';
import protobuf from 'protobufjs';

// Decoded shapes: messages are decoded with `defaults: true, longs: Number`, so every scalar and repeated field is
// present and an unset message field is null. Keep these in step with proto/agent.proto (field names camelCased).

export interface WireProcessSpec {
  args: string[];
  env: string[];
  cwd: string;
  terminal: boolean;
  user: string;
  /** Initial terminal size; 0 takes the guest's default. */
  consoleHeight: number;
  consoleWidth: number;
  /** OCI process fields beyond these, as JSON ('' for none; see OCI_PROCESS_EXTRAS). */
  ociJson: string;
}
/** 0 leaves a value unchanged; memoryLimitBytes -1 means unlimited. */
export interface WireResources {
  memoryLimitBytes: number;
  cpuQuota: number;
  cpuPeriod: number;
  pidsLimit: number;
  cpuShares: number;
}
export interface WireStorage {
  source: string;
  mountPoint: string;
  fstype: string;
  options: string[];
}
export interface WireExitStatus {
  exitCode: number;
  signal: string;
  oomKilled: boolean;
}
export interface WireProcessState {
  execId: string;
  pid: number;
  running: boolean;
  exit: WireExitStatus | null;
}
export interface WireContainerInfo {
  containerId: string;
  status: string;
  pid: number;
  exit: WireExitStatus | null;
  processes: WireProcessState[];
}
export interface WireContainerStats {
  cpuUsageUsec: number;
  memoryUsageBytes: number;
  memoryLimitBytes: number;
  pids: number;
  ioReadBytes: number;
  ioWriteBytes: number;
}
export interface WireProcessInfo {
  pid: number;
  user: string;
  command: string;
}
export interface WireNetInterface {
  name: string;
  mac: string;
  mtu: number;
  addresses: string[];
  up: boolean;
}
export interface WireNetRoute {
  dest: string;
  gateway: string;
  device: string;
  source: string;
}

type Empty = Record<string, never>;
interface ContainerRef {
  containerId: string;
}
interface ProcessRef {
  containerId: string;
  execId: string;
}
export interface OutputRequest extends ProcessRef {
  offset: number;
  /** The output-port session's token: data then goes over the port (empty: in the stream). */
  outputPortToken: Buffer;
  /** The host's number for this read in that session: its frames carry it. */
  portSubscription: number;
}
export interface OutputChunk {
  data: Buffer;
  offset: number;
  dropped: number;
  /** Nonzero (the request's number echoed): this read's data comes over the output port. */
  portSubscription: number;
}
export interface WireAgentEvent {
  seq: number;
  bootId: string;
  event?: 'processExited' | 'oom';
  processExited?: { containerId: string; execId: string; status: WireExitStatus | null } | null;
  oom?: { containerId: string } | null;
}

/** A unary RPC's request and response. */
export interface Unary<Req, Res> {
  readonly kind: 'unary';
  readonly request: Req;
  readonly response: Res;
}
/** A server-streaming RPC's request and the messages it streams. */
export interface ServerStream<Req, Msg> {
  readonly kind: 'stream';
  readonly request: Req;
  readonly response: Msg;
}

/** Every RPC of AgentService, by its proto name. */
export interface AgentMethods {
  Check: Unary<Empty, { version: string; imageVersion: string; bootId: string }>;
  GetGuestDetails: Unary<
    Empty,
    { agentVersion: string; kernel: string; memBlockSizeBytes: number; cpus: number; memTotalBytes: number }
  >;
  SetGuestDateTime: Unary<{ sec: number; usec: number }, Empty>;
  ReseedRandomDev: Unary<{ data: Buffer }, Empty>;
  OnlineCPUMem: Unary<{ cpus: number; memory: boolean }, { cpusOnline: number; memoryBlocksOnlined: number }>;
  MemHotplugByProbe: Unary<{ addresses: number[] }, Empty>;
  CopyFile: Unary<{ path: string; data: Buffer; mode: number }, Empty>;
  GetMetrics: Unary<Empty, { metrics: string }>;
  CreateSandbox: Unary<
    {
      hostname: string;
      dns: string[];
      sandboxPidns: boolean;
      storages: WireStorage[];
      outputBufferBytes: number;
    },
    Empty
  >;
  DestroySandbox: Unary<Empty, Empty>;
  CreateContainer: Unary<
    {
      containerId: string;
      bundle: string;
      process: WireProcessSpec | null;
      resources: WireResources | null;
      storages: WireStorage[];
    },
    { pid: number }
  >;
  StartContainer: Unary<ContainerRef, Empty>;
  RemoveContainer: Unary<ContainerRef & { timeoutMs: number }, Empty>;
  PauseContainer: Unary<ContainerRef, Empty>;
  ResumeContainer: Unary<ContainerRef, Empty>;
  UpdateContainer: Unary<ContainerRef & { resources: WireResources | null }, Empty>;
  StatsContainer: Unary<ContainerRef, { stats: WireContainerStats | null }>;
  ListProcesses: Unary<
    ContainerRef & { format: string; args: string[] },
    { processes: WireProcessInfo[]; table: string }
  >;
  ListContainers: Unary<Empty, { containers: WireContainerInfo[] }>;
  ExecProcess: Unary<ProcessRef & { process: WireProcessSpec | null }, { pid: number }>;
  SignalProcess: Unary<ProcessRef & { signal: string; all: boolean }, Empty>;
  WaitProcess: Unary<ProcessRef, { status: WireExitStatus | null }>;
  WriteStdin: Unary<ProcessRef & { data: Buffer }, { length: number }>;
  CloseStdin: Unary<ProcessRef, Empty>;
  ReadStdout: ServerStream<OutputRequest, OutputChunk>;
  ReadStderr: ServerStream<OutputRequest, OutputChunk>;
  OpenOutputPort: Unary<{ token: Buffer }, Empty>;
  TtyWinResize: Unary<ProcessRef & { rows: number; cols: number }, Empty>;
  GetOOMEvent: Unary<Empty, { containerId: string }>;
  StreamEvents: ServerStream<{ afterSeq: number }, WireAgentEvent>;
  ListInterfaces: Unary<Empty, { interfaces: WireNetInterface[] }>;
  UpdateInterface: Unary<{ interface: WireNetInterface | null }, { interface: WireNetInterface | null }>;
  ListRoutes: Unary<Empty, { routes: WireNetRoute[] }>;
  UpdateRoutes: Unary<{ routes: WireNetRoute[] }, { routes: WireNetRoute[] }>;
}

export type AgentMethodName = keyof AgentMethods;
export type UnaryMethodName = {
  [K in AgentMethodName]: AgentMethods[K] extends Unary<unknown, unknown> ? K : never;
}[AgentMethodName];
export type StreamMethodName = Exclude<AgentMethodName, UnaryMethodName>;
export type RequestOf<K extends AgentMethodName> = AgentMethods[K]['request'];
export type ResponseOf<K extends AgentMethodName> = AgentMethods[K]['response'];

/** Deep partial: what a sender may give (unset fields take their proto3 defaults). */
export type Outgoing<T> = T extends Buffer
  ? T
  : T extends readonly (infer U)[]
    ? readonly Outgoing<U>[]
    : T extends object
      ? { readonly [K in keyof T]?: Outgoing<T[K]> | undefined }
      : T;

export const AGENT_SERVICE_NAME = 'sandboxd.agent.v1.AgentService';

/** How both ends turn messages into objects (protobufjs toObject); the decoded shapes above depend on them. */
export const WIRE_CONVERSION: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** The typed method table of AgentService. */
export type AgentServiceDefinition = {
  readonly [K in AgentMethodName]: MethodDefinition<Outgoing<RequestOf<K>>, ResponseOf<K>> &
    MethodDefinition<RequestOf<K>, Outgoing<ResponseOf<K>>>;
};

/** Path of proto/agent.proto in this package, found upwards from this module (dist/src/agent/ or src/agent/). */
export function defaultProtoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    const candidate = join(dir, 'proto', 'agent.proto');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error('proto/agent.proto not found above the agent module');
}

/**
 * Loads AgentService from the proto file: the method table grpc-js serves and calls, with protobufjs encoding and
 * decoding each message (as @grpc/proto-loader would, without the reflection descriptors it builds for every
 * type: they cost the guest agent about a second of its start under TCG and nothing here reads them). Throws if
 * the file lacks the service.
 */
export function loadAgentService(protoPath: string): AgentServiceDefinition {
  // Read first so a missing file names the path, not protobufjs internals.
  const source = readFileSync(protoPath, 'utf8');
  let service: protobuf.Service;
  try {
    const { root } = protobuf.parse(source, { keepCase: false });
    root.resolveAll();
    service = root.lookupService(AGENT_SERVICE_NAME);
  } catch (err) {
    // A parse error or a file without the service: protobufjs's message says which.
    throw new Error(`${protoPath}: cannot load ${AGENT_SERVICE_NAME}: ${(err as Error).message}`);
  }
  const table: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methodsArray) {
    const request = method.resolvedRequestType!;
    const response = method.resolvedResponseType!;
    table[method.name] = {
      path: `/${AGENT_SERVICE_NAME}/${method.name}`,
      requestStream: method.requestStream === true,
      responseStream: method.responseStream === true,
      requestSerialize: serializerOf(request),
      requestDeserialize: deserializerOf(request),
      responseSerialize: serializerOf(response),
      responseDeserialize: deserializerOf(response),
      originalName: method.name.charAt(0).toLowerCase() + method.name.slice(1),
    };
  }
  if (!('Check' in table)) throw new Error(`${protoPath}: no service ${AGENT_SERVICE_NAME}`);
  return table as unknown as AgentServiceDefinition;
}

function serializerOf(type: protobuf.Type): (value: unknown) => Buffer {
  return (value) => {
    const bytes = type.encode(type.fromObject(value as Record<string, unknown>)).finish();
    // protobufjs writes into a Buffer under Node: no copy.
    return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializerOf(type: protobuf.Type): (bytes: Buffer) => unknown {
  return (bytes) => type.toObject(type.decode(bytes), WIRE_CONVERSION);
}

// ---- resync handshake (GUEST.md: a new host connection can start with stale bytes of an earlier session) ----
// The host opens every session with SYNC + 16-byte token; the guest drops its HTTP/2 session, answers ACK + the same
// token and starts a fresh one; the host drops every byte before that ACK. Both look like HTTP/2 frames of an
// unknown type (length 16, type 0xFF / 0xFE) so the guest can spot a SYNC at a frame boundary mid-session.
export const HANDSHAKE_TOKEN_BYTES = 16;
export const SYNC_MAGIC: Buffer = Buffer.from([0, 0, 16, 0xff, 0, 0x53, 0x42, 0x58, 0x44]);
export const ACK_MAGIC: Buffer = Buffer.from([0, 0, 16, 0xfe, 0, 0x53, 0x42, 0x58, 0x41]);
/** The HTTP/2 client connection preface: the first bytes of every session after the handshake. */
export const HTTP2_PREFACE: Buffer = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

// ---- the output port (virtio-serial `agent.output.0`, hypervisor's OUTPUT_PORT_NAME; guest to host) ----
// Process output skips gRPC there: protobuf, HTTP/2 framing and the JS stream under it cost the guest most of its CPU
// per byte under TCG. The host connects, calls OpenOutputPort(token) and drops every byte before OUTPUT_ACK + token
// (a write the guest had in flight for an earlier host); after it come frames: a fixed header, then `length` bytes.
export const OUTPUT_ACK: Buffer = Buffer.from('SBXO-ACK', 'latin1');
const OUTPUT_FRAME_MAGIC = 0x5342584f; // 'SBXO'
export const OUTPUT_FRAME_HEADER_BYTES = 24;
/** Largest payload of one frame (a bad length is a broken session, not an allocation). */
export const MAX_OUTPUT_FRAME_BYTES = 4 * 1024 * 1024;

export type OutputFrameKind = 'data' | 'end';
export interface OutputFrameHeader {
  /** The subscription the ReadStdout/ReadStderr call was given. */
  readonly subscription: number;
  readonly kind: OutputFrameKind;
  /** Absolute stream offset of the payload's first byte (data), or of the stream's end (end). */
  readonly offset: number;
  readonly length: number;
}

/** Header layout: magic u32, subscription u32, kind u8 (1 data, 2 end), 3 reserved, length u32, offset u64; BE. */
export function encodeOutputFrameHeader(frame: OutputFrameHeader): Buffer {
  const header = Buffer.alloc(OUTPUT_FRAME_HEADER_BYTES);
  header.writeUInt32BE(OUTPUT_FRAME_MAGIC, 0);
  header.writeUInt32BE(frame.subscription, 4);
  header.writeUInt8(frame.kind === 'data' ? 1 : 2, 8);
  header.writeUInt32BE(frame.length, 12);
  header.writeUInt32BE(Math.floor(frame.offset / 2 ** 32), 16);
  header.writeUInt32BE(frame.offset % 2 ** 32, 20);
  return header;
}

/** The header at `at`, or a reason the bytes are not one (the session is then unusable). */
export function decodeOutputFrameHeader(bytes: Buffer, at = 0): OutputFrameHeader | string {
  if (bytes.readUInt32BE(at) !== OUTPUT_FRAME_MAGIC) return 'bad frame magic';
  const kind = bytes.readUInt8(at + 8);
  if (kind !== 1 && kind !== 2) return `bad frame kind ${kind}`;
  const length = bytes.readUInt32BE(at + 12);
  if (length > MAX_OUTPUT_FRAME_BYTES) return `frame of ${length} bytes exceeds ${MAX_OUTPUT_FRAME_BYTES}`;
  return {
    subscription: bytes.readUInt32BE(at + 4),
    kind: kind === 1 ? 'data' : 'end',
    length,
    offset: bytes.readUInt32BE(at + 16) * 2 ** 32 + bytes.readUInt32BE(at + 20),
  };
}

/** Error metadata keys: the agent sends its error kind and details so the host rebuilds the typed error. */
export const ERROR_KIND_KEY = 'sandboxd-error-kind';
export const ERROR_DETAILS_KEY = 'sandboxd-error-details';

/** Version of this agent protocol implementation (guest reports it in Check). */
export const AGENT_VERSION = '0.1.0';
