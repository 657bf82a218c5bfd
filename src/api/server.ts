// The JSON-RPC 2.0 server on a unix socket: connections accepted and counted, requests dispatched, a graceful close.
import type { Server, Socket } from 'node:net';
import { createJSONRPCErrorResponse } from 'json-rpc-2.0';
import pino from 'pino';
import type { Runtime } from '../actors/index.js';
import type { EventEnvelope } from '../events/index.js';
import type { Accel } from '../hypervisor/index.js';
import type { OutputKeeper } from '../logs/index.js';
import type { TemplateStore } from '../templates/index.js';
import { ApiConnection } from './connection.js';
import { createDispatcher, isCommand } from './dispatch.js';
import { RPC_PARSE_ERROR } from './errors.js';
import { MAX_MESSAGE_BYTES } from './framing.js';
import type { DaemonFacts, EventLogReader, MethodContext, TransitionProblem } from './methods/index.js';
import type { ApiTraffic } from './metrics.js';
import { listenOnSocket } from './socket.js';

export interface ApiServerOptions {
  readonly runtime: Runtime;
  readonly events: EventLogReader;
  readonly facts: DaemonFacts;
  /** The hypervisor's accelerator, for daemon.info (probed once by the hypervisor). */
  readonly accel?: () => Promise<Accel>;
  readonly logger?: pino.Logger;
  /** The machines' log/machine agreement check, for events.verify. */
  readonly checkTransitions?: (events: readonly EventEnvelope[]) => readonly TransitionProblem[];
  /** Host logs of process output, for exec.output (absent: read from the guest). */
  readonly logs?: OutputKeeper;
  /** The VM templates (template.*). */
  readonly templates?: TemplateStore;
  /** Largest accepted request line (default 1 MiB). */
  readonly maxMessageBytes?: number;
  /** Bytes a connection may have queued before its subscriptions are dropped (default 4 MiB). */
  readonly subscriberQueueBytes?: number;
  /** Requests one connection may have in flight before the server stops reading it (default 256). */
  readonly maxInFlightPerConnection?: number;
}

export interface ApiServer {
  /** Listens on `socketPath` (mode 0600). A stale socket file is replaced; a live one is refused. */
  listen(socketPath: string): Promise<void>;
  /**
   * Stops accepting, lets in-flight commands finish (up to graceMs, default 30 s), then closes every
   * connection (pending waits end with it).
   */
  close(options?: { graceMs?: number }): Promise<void>;
  readonly connections: number;
  readonly inFlight: number;
  /** Connections, requests in flight, and requests answered per method (for metrics). */
  traffic(): ApiTraffic;
}

/** Creates the API server; nothing listens until `listen`. */
export function createApiServer(options: ApiServerOptions): ApiServer {
  const logger = options.logger ?? pino({ level: 'silent' });
  const maxBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  const queueBytes = options.subscriberQueueBytes ?? 4 * 1024 * 1024;
  const maxInFlight = options.maxInFlightPerConnection ?? 256;
  const connections = new Set<ApiConnection>();
  let inFlight = 0;
  let commands = 0;
  let nextConnId = 1;
  let server: Server | undefined;
  let closing = false;
  const idleWaiters: (() => void)[] = [];

  const dispatcher = createDispatcher(logger, () => closing);
  const traffic = (): ApiTraffic => ({
    connections: connections.size,
    inFlight,
    requests: dispatcher.requests,
  });

  async function handleLine(conn: ApiConnection, ctx: MethodContext, line: string): Promise<void> {
    let payload: unknown;
    try {
      payload = JSON.parse(line);
    } catch {
      conn.write(
        createJSONRPCErrorResponse(null, RPC_PARSE_ERROR, 'parse error: not valid JSON', {
          code: 'InvalidArgument',
        }),
      );
      return;
    }
    // Counted until the answer is written, so a graceful close never cuts a command's response.
    const command = isCommand(payload);
    if (command) commands++;
    try {
      await dispatcher.answer(payload, ctx, (message) => conn.write(message));
    } finally {
      if (command && --commands === 0) for (const w of idleWaiters.splice(0)) w();
    }
  }

  function onConnection(socket: Socket): void {
    const conn: ApiConnection = new ApiConnection({
      id: nextConnId++,
      socket,
      logger,
      maxMessageBytes: maxBytes,
      subscriberQueueBytes: queueBytes,
      maxInFlight,
      handleLine: (line) => handleLine(conn, ctx, line),
      requests: {
        started: () => {
          inFlight++;
        },
        settled: () => {
          inFlight--;
        },
      },
      onClose: (closed) => connections.delete(closed),
    });
    connections.add(conn);
    const ctx: MethodContext = {
      runtime: options.runtime,
      events: options.events,
      facts: options.facts,
      connection: conn.context(),
      traffic,
      ...(options.checkTransitions ? { checkTransitions: options.checkTransitions } : {}),
      ...(options.accel ? { accel: options.accel } : {}),
      ...(options.logs ? { logs: options.logs } : {}),
      ...(options.templates ? { templates: options.templates } : {}),
    };
  }

  return {
    get connections() {
      return connections.size;
    },
    get inFlight() {
      return inFlight;
    },
    traffic,
    async listen(socketPath: string) {
      const srv = await listenOnSocket(socketPath, onConnection);
      srv.on('error', (err) => logger.error({ err }, 'api server error'));
      server = srv;
      logger.info({ socket: socketPath }, 'api listening');
    },
    async close(closeOptions) {
      closing = true;
      const srv = server;
      server = undefined;
      const closed = srv ? new Promise<void>((resolve) => srv.close(() => resolve())) : Promise.resolve();
      if (commands > 0) {
        const grace = closeOptions?.graceMs ?? 30_000;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, grace);
          idleWaiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      for (const conn of connections) {
        conn.subscriptions.endAll();
        conn.socket.end();
        conn.socket.destroySoon();
      }
      // Ends connections that do not close their side promptly.
      const deadline = setTimeout(() => {
        for (const conn of connections) conn.socket.destroy();
      }, 1000);
      await closed;
      clearTimeout(deadline);
    },
  };
}
