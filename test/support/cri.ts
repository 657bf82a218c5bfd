// Kubernetes' CRI v1 API (runtime.v1.RuntimeService and ImageService) on containerd's socket, from
// proto/cri.proto (our own declaration of the part of the published api.proto the tests use), as the kubelet
// would call it: unary calls with @grpc/grpc-js, each a promise of the decoded response.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

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
