// One client's connection to the API: request lines in (bounded in size and in flight), answers out, and the
// end of it: a client's EOF answered by the server's once every request it sent is answered.
import type { Socket } from 'node:net';
import { createJSONRPCErrorResponse } from 'json-rpc-2.0';
import type { Logger } from 'pino';
import { RPC_INVALID_REQUEST } from './errors.js';
import { LineDecoder } from './framing.js';
import type { ConnectionContext } from './methods/index.js';
import { ConnectionSubscriptions } from './subscriptions.js';

export interface ApiConnectionOptions {
  readonly id: number;
  readonly socket: Socket;
  readonly logger: Logger;
  /** Largest accepted request line. */
  readonly maxMessageBytes: number;
  /** Bytes the socket may have queued before subscriptions are dropped (16 times that cuts the client off). */
  readonly subscriberQueueBytes: number;
  /** Requests in flight at which the connection stops being read. */
  readonly maxInFlight: number;
  /** Answers one request line, every answer through `write`. */
  readonly handleLine: (line: string) => Promise<void>;
  /** The server's count of requests in flight: one more started, one more settled. */
  readonly requests: { started(): void; settled(): void };
  /** The socket closed. */
  readonly onClose: (connection: ApiConnection) => void;
}

/** One client connection: its socket, its requests in flight and its subscriptions. */
export class ApiConnection {
  readonly id: number;
  readonly socket: Socket;
  readonly subscriptions: ConnectionSubscriptions;
  readonly #options: ApiConnectionOptions;
  #inFlight = 0;
  /** The client half-closed (or hung up): the server ends too once nothing is in flight. */
  #readEnded = false;

  constructor(options: ApiConnectionOptions) {
    const { id, socket, logger, maxMessageBytes } = options;
    this.id = id;
    this.socket = socket;
    this.#options = options;
    this.subscriptions = new ConnectionSubscriptions({
      connectionId: id,
      socket,
      queueBytes: options.subscriberQueueBytes,
      logger,
      write: (message) => this.write(message),
    });
    const decoder = new LineDecoder(
      maxMessageBytes,
      (line) => this.#onLine(line),
      (size) => {
        logger.warn({ conn: id, size }, 'request over the size limit refused');
        this.write(
          createJSONRPCErrorResponse(
            null,
            RPC_INVALID_REQUEST,
            `invalid request: larger than ${maxMessageBytes} bytes`,
            {
              code: 'InvalidArgument',
              field: 'request',
              limit: maxMessageBytes,
            },
          ),
        );
      },
    );
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    socket.on('end', () => {
      this.#readEnded = true;
      decoder.end();
      this.#endIfDone();
    });
    socket.on('error', (err) => logger.debug({ err, conn: id }, 'connection error'));
    socket.on('close', () => {
      options.onClose(this);
      this.subscriptions.endAll();
      logger.debug({ conn: id }, 'connection closed');
    });
  }

  /** What a method handler may ask of this connection. */
  context(): ConnectionContext {
    return {
      id: this.id,
      subscribe: (spec) => this.subscriptions.subscribe(spec),
      unsubscribe: (id) => this.subscriptions.end(id),
    };
  }

  /** Sends one message (a line of JSON); nothing once the socket is gone. */
  write(message: unknown): void {
    const { socket, subscriberQueueBytes, logger } = this.#options;
    if (socket.destroyed || !socket.writable) return;
    // A client that stopped reading its responses altogether is cut off rather than buffered forever.
    if (socket.writableLength > 16 * subscriberQueueBytes) {
      logger.warn({ conn: this.id, queued: socket.writableLength }, 'client not reading: connection dropped');
      socket.destroy();
      return;
    }
    socket.write(`${JSON.stringify(message)}\n`);
  }

  #onLine(line: string): void {
    const { socket, maxInFlight, logger, requests } = this.#options;
    requests.started();
    this.#inFlight++;
    if (this.#inFlight >= maxInFlight) socket.pause();
    this.#options
      .handleLine(line)
      .catch((err) => logger.error({ err, conn: this.id }, 'request handling failed'))
      .finally(() => this.#settle());
  }

  #settle(): void {
    const { socket, maxInFlight, requests } = this.#options;
    requests.settled();
    this.#inFlight--;
    if (this.#inFlight < maxInFlight && socket.isPaused() && !socket.destroyed) socket.resume();
    this.#endIfDone();
  }

  /**
   * A client that sent EOF gets the answer to every request it sent, then the server's EOF. EOF reads the
   * same for a half-close and a hang-up, so its subscriptions end there: a gone client's would linger.
   */
  #endIfDone(): void {
    if (!this.#readEnded || this.socket.destroyed) return;
    this.subscriptions.endAll();
    if (this.#inFlight === 0) this.socket.end();
  }
}
