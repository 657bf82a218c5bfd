// Kubernetes' CRI v1 API (runtime.v1.RuntimeService and ImageService) on containerd's socket, from
// proto/cri.proto (our own declaration of the part of the published api.proto the tests use), as the kubelet
// would call it: unary calls with @grpc/grpc-js, each a promise of the decoded response.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import WebSocket from 'ws';

const CRI_PROTO = fileURLToPath(new URL('../../../proto/cri.proto', import.meta.url));

/** A decoded CRI message: fields camelCased, enums as their names, int64 as numbers, bytes as Buffers. */
// biome-ignore lint/suspicious/noExplicitAny: the test reads the fields it declared in proto/cri.proto
export type CriMessage = Record<string, any>;

export interface CriClient {
  /** RuntimeService.<method>(request) → the response; rejects with the gRPC status error. */
  runtime(method: string, request: CriMessage, timeoutMs?: number): Promise<CriMessage>;
  /** ImageService.<method>(request). */
  image(method: string, request: CriMessage, timeoutMs?: number): Promise<CriMessage>;
  close(): void;
}

export function criClient(address: string): CriClient {
  const def = protoLoader.loadSync(CRI_PROTO, {
    longs: Number,
    enums: String,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    runtime: { v1: Record<'RuntimeService' | 'ImageService', grpc.ServiceClientConstructor> };
  };
  const target = `unix://${address}`;
  const creds = grpc.credentials.createInsecure();
  const runtime = new pkg.runtime.v1.RuntimeService(target, creds);
  const image = new pkg.runtime.v1.ImageService(target, creds);
  const caller =
    (client: grpc.Client) =>
    (method: string, request: CriMessage, timeoutMs = 240_000): Promise<CriMessage> =>
      new Promise((resolve, reject) => {
        const fn = (client as unknown as Record<string, (...a: unknown[]) => void>)[method];
        if (!fn) {
          reject(new Error(`CRI method ${method} is not in proto/cri.proto`));
          return;
        }
        fn.call(
          client,
          request,
          { deadline: Date.now() + timeoutMs },
          (err: Error | null, res: CriMessage) => (err ? reject(err) : resolve(res)),
        );
      });
  return {
    runtime: caller(runtime),
    image: caller(image),
    close() {
      runtime.close();
      image.close();
    },
  };
}

/** What one streaming session (CRI Exec / Attach URL) gave back. */
export interface StreamResult {
  /** The subprotocol the stream server chose. */
  readonly protocol: string;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  /** Channel 3: under v4.channel.k8s.io a metav1.Status JSON ({status: 'Success'} or 'Failure' with the code). */
  readonly status: string;
}

/**
 * Speaks kubectl's WebSocket remotecommand protocol (`v4.channel.k8s.io`) to a URL of containerd's stream
 * server: every binary message starts with its channel (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize);
 * the server ends the session by closing the socket once the process exited and its status was sent.
 * `input` is sent on channel 0 once the server signalled the session is up (its first, empty, message);
 * `resize` on channel 4 before it.
 */
export function streamSession(
  url: string,
  options: { input?: string; resize?: { Width: number; Height: number }; timeoutMs?: number } = {},
): Promise<StreamResult> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws'), ['v4.channel.k8s.io']);
    const out: Record<number, Buffer[]> = { 1: [], 2: [], 3: [] };
    let started = false;
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`stream ${url}: no end in ${options.timeoutMs ?? 60_000} ms`));
    }, options.timeoutMs ?? 60_000);
    const send = (channel: number, data: string) =>
      ws.send(Buffer.concat([Buffer.of(channel), Buffer.from(data)]));
    ws.on('message', (data: Buffer) => {
      const [channel] = data;
      if (channel !== undefined && out[channel]) out[channel].push(data.subarray(1));
      if (!started) {
        started = true;
        if (options.resize) send(4, JSON.stringify(options.resize));
        if (options.input !== undefined) send(0, options.input);
      }
    });
    ws.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.on('close', () => {
      clearTimeout(timer);
      resolve({
        protocol: ws.protocol,
        stdout: Buffer.concat(out[1] ?? []),
        stderr: Buffer.concat(out[2] ?? []),
        status: Buffer.concat(out[3] ?? []).toString(),
      });
    });
  });
}
