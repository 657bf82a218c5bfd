// Following one output stream of a guest process across dropped connections, by byte offset: its bytes over the
// output port when the VM has one (wire.ts), else in the gRPC stream (older guests, VMs without the port).
import type { ClientReadableStream, ServiceError } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Observable } from 'rxjs';
import { AgentError } from '../errors/index.js';
import { agentErrorOf, GRPC_STATUS } from './grpc-errors.js';
import { OutputPortReader } from './output-port.js';
import type { AgentOutputChunk } from './types.js';
import type { OutputChunk } from './wire.js';

/** Transport failures in a row after which a stream gives up (each retry waits 300 ms). */
const MAX_STREAM_FAILURES = 50;
/** After a failed attempt to open the port, reads go over gRPC for this long before the port is tried again. */
const PORT_RETRY_MS = 30_000;
const FAILED_PRECONDITION = 9;

/** Where one attempt's bytes and outcome go. */
export interface OutputSink {
  chunk(offset: number, data: Buffer): void;
  end(): void;
  fail(err: Error, transient: boolean): void;
}

/**
 * Output from `from` (or the oldest byte the agent still buffers); `start(offset, sink)` begins one attempt at an
 * offset and gives its cancel, or undefined once the sandbox is no longer connected. Resumes at the next offset
 * after a transient failure; a chunk's offset past the previous end means the agent dropped the bytes in between.
 */
export function followOutput(
  rpc: string,
  sandboxId: string,
  from: number,
  start: (offset: number, sink: OutputSink) => (() => void) | undefined,
): Observable<AgentOutputChunk> {
  return new Observable<AgentOutputChunk>((subscriber) => {
    let offset = from;
    let cancel: (() => void) | undefined;
    let stopped = false;
    let failures = 0;
    const follow = () => {
      if (stopped) return;
      let done = false;
      cancel = start(offset, {
        chunk: (at, data) => {
          if (done || stopped) return;
          failures = 0;
          const end = at + data.length;
          if (end <= offset) return;
          const skip = Math.max(0, offset - at);
          const fresh = data.subarray(skip);
          offset = end;
          subscriber.next({
            offset: at + skip,
            data: new Uint8Array(fresh.buffer, fresh.byteOffset, fresh.length),
          });
        },
        end: () => {
          if (done || stopped) return;
          done = true;
          subscriber.complete();
        },
        fail: (err, transient) => {
          if (done || stopped) return;
          done = true;
          cancel?.();
          // A retry starts through `start`, which says so when the sandbox disconnected meanwhile.
          if (transient && failures++ < MAX_STREAM_FAILURES) setTimeout(follow, 300);
          else subscriber.error(err);
        },
      });
      if (!cancel) subscriber.error(new AgentError(`agent ${rpc}`, 'not connected', { sandboxId }));
    };
    follow();
    return () => {
      stopped = true;
      cancel?.();
    };
  });
}

export interface OutputPortLinkOptions {
  readonly socketPath: string;
  /** OpenOutputPort through the agent channel. */
  readonly openSession: (token: Buffer) => Promise<void>;
  readonly logger: Logger;
}

/** A connection's output-port session: opened on demand, again after it broke; none when the agent refuses one. */
export class OutputPortLink {
  readonly #o: OutputPortLinkOptions;
  #pending: Promise<OutputPortReader | undefined> | undefined;
  #retryAfter = 0;
  #refused = false;
  #closed = false;

  constructor(options: OutputPortLinkOptions) {
    this.#o = options;
  }

  /** The live session, opened if need be; undefined: read in the gRPC stream. */
  async current(): Promise<OutputPortReader | undefined> {
    for (;;) {
      if (this.#refused || this.#closed) return undefined;
      const pending = this.#pending;
      if (pending) {
        const reader = await pending;
        if (this.#pending !== pending) continue;
        if (reader && !reader.closed) return reader;
        if (!reader && Date.now() < this.#retryAfter) return undefined;
      }
      this.#pending = this.#open();
    }
  }

  async #open(): Promise<OutputPortReader | undefined> {
    let refusedBy: unknown;
    try {
      const reader = await OutputPortReader.open({
        socketPath: this.#o.socketPath,
        logger: this.#o.logger,
        openSession: (token) =>
          this.#o.openSession(token).catch((err: unknown) => {
            refusedBy = err;
            throw err;
          }),
      });
      if (this.#closed) reader.close();
      return this.#closed ? undefined : reader;
    } catch (err) {
      // An agent without the RPC or without the port says so once; a socket that did not answer may later.
      this.#refused = refusedBy !== undefined;
      this.#retryAfter = Date.now() + PORT_RETRY_MS;
      this.#o.logger.info(
        { err, step: 'output port', refused: this.#refused },
        'output port unavailable; output goes over gRPC',
      );
      return undefined;
    }
  }

  close(): void {
    this.#closed = true;
    void this.#pending?.then((reader) => reader?.close());
  }
}

/**
 * One attempt at reading a stream: over the link's port session when there is one (the stream's only message
 * then echoes the subscription), else in the stream. `open` makes the call, with the port's token and subscription.
 */
export function readOutputOnce(
  rpc: string,
  sandboxId: string,
  link: OutputPortLink | undefined,
  open: (port: { token: Buffer; subscription: number } | undefined) => ClientReadableStream<OutputChunk>,
  sink: OutputSink,
): () => void {
  let cancelled = false;
  let call: ClientReadableStream<OutputChunk> | undefined;
  let port: OutputPortReader | undefined;
  let subscription = 0;
  const unsubscribe = () => {
    if (port && subscription) port.unsubscribe(subscription);
  };
  const begin = (reader: OutputPortReader | undefined) => {
    if (cancelled) return;
    if (reader && !reader.closed) {
      port = reader;
      // Subscribed before the call: frames may arrive before the stream's own message does.
      subscription = reader.subscribe({
        data: (at, data) => sink.chunk(at, data),
        end: () => {
          call?.cancel();
          sink.end();
        },
        lost: (reason) => sink.fail(new AgentError(`agent ${rpc}`, reason, { sandboxId }), true),
      });
    }
    const current = open(port ? { token: port.token, subscription } : undefined);
    call = current;
    let viaPort = false;
    current.on('data', (chunk: OutputChunk) => {
      if (chunk.portSubscription) viaPort = true;
      else sink.chunk(chunk.offset, chunk.data);
    });
    current.on('error', (err: ServiceError) => {
      unsubscribe();
      if (cancelled) return;
      // The agent no longer knows the session (it began another): drop it, the retry opens a new one.
      const stale = port !== undefined && err.code === FAILED_PRECONDITION;
      if (stale) port?.close();
      const transient =
        stale ||
        err.code === GRPC_STATUS.UNAVAILABLE ||
        err.code === GRPC_STATUS.INTERNAL ||
        err.code === GRPC_STATUS.CANCELLED;
      sink.fail(agentErrorOf(err, rpc, sandboxId, 0), transient);
    });
    current.on('end', () => {
      // Over the port the END frame ends the read; an older agent that ignored the token ends it here.
      if (viaPort) return;
      unsubscribe();
      sink.end();
    });
  };
  if (link) link.current().then(begin, () => begin(undefined));
  else begin(undefined);
  return () => {
    cancelled = true;
    unsubscribe();
    call?.cancel();
  };
}
