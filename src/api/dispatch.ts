// From a parsed request (or batch) to its answer: the envelope checked, the params validated against the method's
// schema, the handler run and counted, every error mapped to a JSON-RPC error with data.code.
import {
  createJSONRPCErrorResponse,
  JSONRPCErrorException,
  type JSONRPCErrorResponse,
  type JSONRPCResponse,
  JSONRPCServer,
} from 'json-rpc-2.0';
import type { Logger } from 'pino';
import { z } from 'zod';
import { SandboxdError } from '../errors/index.js';
import { invalidParamsError, RPC_INVALID_REQUEST, RPC_METHOD_NOT_FOUND, toRpcError } from './errors.js';
import { type MethodContext, methodTable } from './methods/index.js';
import type { MethodTraffic } from './metrics.js';

/** Methods that only wait for something; a shutdown ends them instead of waiting for them. */
const WAITS = new Set(['container.wait', 'exec.wait', 'exec.output']);

/** Answers requests with the method table's handlers. */
export interface Dispatcher {
  /** Requests answered per method so far (for metrics). */
  readonly requests: Map<string, MethodTraffic>;
  /**
   * Answers `payload`, one request or a batch, through `reply`: one response, a batch's responses in one array,
   * nothing for notifications.
   */
  answer(payload: unknown, ctx: MethodContext, reply: (message: unknown) => void): Promise<void>;
}

/**
 * Where `value` has an own `__proto__` key (JSON.parse makes one), if anywhere: zod would silently drop
 * such a key from a record, so the log would hold something else than what was accepted.
 */
function protoKeyPath(value: unknown, path: (string | number)[] = []): (string | number)[] | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = protoKeyPath(value[i], [...path, i]);
      if (found) return found;
    }
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (key === '__proto__') return [...path, key];
    const found = protoKeyPath((value as Record<string, unknown>)[key], [...path, key]);
    if (found) return found;
  }
  return undefined;
}

/** Thrown by handlers for protocol-level errors so the mapper keeps code and data as given. */
const asException = (e: { code: number; message: string; data?: unknown }) =>
  new JSONRPCErrorException(e.message, e.code, e.data);

/** The entity ids of a request, for structured logs (sandboxId, containerId, execId). */
function idsOf(params: unknown): Record<string, string> {
  if (typeof params !== 'object' || params === null) return {};
  const p = params as Record<string, unknown>;
  const out: Record<string, string> = {};
  const sandboxId =
    p.sandboxId ?? (p.containerId === undefined && typeof p.id === 'string' ? p.id : undefined);
  if (typeof sandboxId === 'string') out.sandboxId = sandboxId;
  const containerId = p.containerId ?? (p.sandboxId !== undefined ? p.id : undefined);
  if (typeof containerId === 'string') out.containerId = containerId;
  if (typeof p.execId === 'string' && p.execId !== '') out.execId = p.execId;
  return out;
}

/** Waits (container.wait, exec.wait, exec.output) change nothing: shutdown does not wait for them. */
export function isCommand(payload: unknown): boolean {
  const methodOf = (x: unknown) =>
    typeof x === 'object' && x !== null ? (x as { method?: unknown }).method : undefined;
  const items = Array.isArray(payload) ? payload : [payload];
  return items.some((x) => {
    const m = methodOf(x);
    return typeof m !== 'string' || !WAITS.has(m);
  });
}

function invalidRequest(item: unknown): JSONRPCResponse | undefined {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) {
    return createJSONRPCErrorResponse(null, RPC_INVALID_REQUEST, 'invalid request: not an object', {
      code: 'InvalidArgument',
      field: 'request',
    });
  }
  const r = item as Record<string, unknown>;
  const idOk = r.id === undefined || r.id === null || typeof r.id === 'string' || typeof r.id === 'number';
  const id = idOk ? ((r.id ?? null) as string | number | null) : null;
  const bad = (field: string, why: string) =>
    createJSONRPCErrorResponse(id, RPC_INVALID_REQUEST, `invalid request: ${field} ${why}`, {
      code: 'InvalidArgument',
      field,
    });
  if (r.jsonrpc !== '2.0') return bad('jsonrpc', 'must be "2.0"');
  if (typeof r.method !== 'string') return bad('method', 'must be a string');
  if (!idOk) return bad('id', 'must be a string, number or null');
  if (r.params !== undefined && (typeof r.params !== 'object' || r.params === null)) {
    return bad('params', 'must be an object');
  }
  return undefined;
}

/** A dispatcher over every method of the table; once `isClosing()`, requests are refused as shutting down. */
export function createDispatcher(logger: Logger, isClosing: () => boolean): Dispatcher {
  const rpc = new JSONRPCServer<MethodContext>({
    errorListener: (message, data) => logger.debug({ err: data }, message),
  });
  rpc.mapErrorToJSONRPCErrorResponse = (id, error): JSONRPCErrorResponse => {
    if (error instanceof JSONRPCErrorException)
      return createJSONRPCErrorResponse(id, error.code, error.message, error.data);
    const e = toRpcError(error);
    if (!(error instanceof SandboxdError)) logger.error({ err: error }, 'unexpected error in a method');
    return createJSONRPCErrorResponse(id, e.code, e.message, e.data);
  };
  const requests = new Map<string, MethodTraffic>();
  for (const spec of methodTable.values()) {
    const counted: MethodTraffic = { ok: 0, error: 0, seconds: 0 };
    requests.set(spec.name, counted);
    rpc.addMethod(spec.name, async (params: unknown, ctx: MethodContext) => {
      const started = performance.now();
      const poisoned = protoKeyPath(params);
      if (poisoned) {
        counted.error++;
        throw asException(
          invalidParamsError(
            new z.ZodError([
              { code: 'custom', path: poisoned, message: '__proto__ is not a usable key', input: undefined },
            ]),
            params,
          ),
        );
      }
      // params is always an object (docs/api.md): none at all reads as {}, so a missing id is "required".
      const given = params ?? {};
      const parsed = spec.params.safeParse(given);
      if (!parsed.success) {
        counted.error++;
        throw asException(invalidParamsError(parsed.error, given));
      }
      const log = logger.isLevelEnabled('debug')
        ? logger.child({ method: spec.name, conn: ctx.connection.id, ...idsOf(parsed.data) })
        : undefined;
      try {
        const result = (await spec.handler(parsed.data, ctx)) ?? null;
        counted.ok++;
        log?.debug({ ms: Math.round(performance.now() - started) }, 'request done');
        return result;
      } catch (err) {
        counted.error++;
        log?.debug({ ms: Math.round(performance.now() - started), err }, 'request failed');
        throw err;
      } finally {
        counted.seconds += (performance.now() - started) / 1000;
      }
    });
  }

  async function handleOne(item: unknown, ctx: MethodContext): Promise<JSONRPCResponse | null> {
    const refused = invalidRequest(item);
    if (refused) return refused;
    const request = item as { method: string; id?: unknown };
    if (isClosing()) {
      if (request.id === undefined) return null;
      return createJSONRPCErrorResponse(
        request.id as string | number | null,
        -32000,
        'sandboxd is shutting down',
        { code: 'Internal' },
      );
    }
    const response = (await rpc.receive(
      item as Parameters<typeof rpc.receive>[0],
      ctx,
    )) as JSONRPCResponse | null;
    // The library answers an unknown method bare; every other error of ours carries data.code.
    if (response?.error?.code === RPC_METHOD_NOT_FOUND && response.error.data === undefined) {
      response.error.data = { code: 'InvalidArgument', field: 'method' };
      response.error.message = `method not found: ${request.method}`;
    }
    return response;
  }

  async function answer(
    payload: unknown,
    ctx: MethodContext,
    reply: (message: unknown) => void,
  ): Promise<void> {
    if (Array.isArray(payload)) {
      if (payload.length === 0) {
        reply(
          createJSONRPCErrorResponse(null, RPC_INVALID_REQUEST, 'invalid request: empty batch', {
            code: 'InvalidArgument',
            field: 'request',
          }),
        );
        return;
      }
      const responses = (await Promise.all(payload.map((item) => handleOne(item, ctx)))).filter(
        (r): r is JSONRPCResponse => r !== null,
      );
      if (responses.length > 0) reply(responses);
      return;
    }
    const response = await handleOne(payload, ctx);
    if (response) reply(response);
  }

  return { requests, answer };
}
