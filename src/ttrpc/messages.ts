// ttrpc's own envelope messages (github.com/containerd/ttrpc request.proto and google/rpc/status.proto),
// declared once as a protobufjs schema so every byte on the wire goes through protobufjs.
import protobuf from 'protobufjs';

const root = protobuf.Root.fromJSON({
  nested: {
    ttrpc: {
      nested: {
        Request: {
          fields: {
            service: { type: 'string', id: 1 },
            method: { type: 'string', id: 2 },
            payload: { type: 'bytes', id: 3 },
            timeoutNano: { type: 'int64', id: 4 },
            metadata: { rule: 'repeated', type: 'KeyValue', id: 5 },
          },
        },
        Response: {
          fields: {
            status: { type: 'google.rpc.Status', id: 1 },
            payload: { type: 'bytes', id: 2 },
          },
        },
        KeyValue: { fields: { key: { type: 'string', id: 1 }, value: { type: 'string', id: 2 } } },
      },
    },
    google: {
      nested: {
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: 'int32', id: 1 },
                message: { type: 'string', id: 2 },
                details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
              },
            },
          },
        },
        protobuf: {
          nested: {
            Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
          },
        },
      },
    },
  },
});

const RequestType = root.lookupType('ttrpc.Request');
const ResponseType = root.lookupType('ttrpc.Response');

/** Metadata as ttrpc carries it: each key may repeat. */
export type Metadata = Readonly<Record<string, readonly string[]>>;

export interface RequestMessage {
  readonly service: string;
  readonly method: string;
  readonly payload: Uint8Array;
  readonly timeoutNano: bigint;
  readonly metadata: Metadata;
}

export interface ResponseMessage {
  readonly status?: { readonly code: number; readonly message: string };
  readonly payload: Uint8Array;
}

export function encodeRequest(req: RequestMessage): Uint8Array {
  const metadata = Object.entries(req.metadata).flatMap(([key, values]) =>
    values.map((value) => ({ key, value })),
  );
  return RequestType.encode(
    RequestType.fromObject({
      service: req.service,
      method: req.method,
      payload: req.payload,
      timeoutNano: req.timeoutNano.toString(),
      metadata,
    }),
  ).finish();
}

export function decodeRequest(bytes: Uint8Array): RequestMessage {
  const o = RequestType.toObject(RequestType.decode(bytes), {
    longs: String,
    bytes: Buffer,
    defaults: true,
  }) as {
    service: string;
    method: string;
    payload: Buffer;
    timeoutNano: string;
    metadata: { key: string; value: string }[];
  };
  const metadata: Record<string, string[]> = {};
  for (const kv of o.metadata) {
    const values = metadata[kv.key] ?? [];
    values.push(kv.value);
    metadata[kv.key] = values;
  }
  return {
    service: o.service,
    method: o.method,
    payload: o.payload,
    timeoutNano: BigInt(o.timeoutNano),
    metadata,
  };
}

export function encodeResponse(res: ResponseMessage): Uint8Array {
  return ResponseType.encode(
    ResponseType.fromObject({
      ...(res.status && res.status.code !== 0 ? { status: res.status } : {}),
      payload: res.payload,
    }),
  ).finish();
}

export function decodeResponse(bytes: Uint8Array): ResponseMessage {
  const o = ResponseType.toObject(ResponseType.decode(bytes), { bytes: Buffer, defaults: true }) as {
    status?: { code?: number; message?: string };
    payload: Buffer;
  };
  return {
    ...(o.status ? { status: { code: o.status.code ?? 0, message: o.status.message ?? '' } } : {}),
    payload: o.payload,
  };
}
