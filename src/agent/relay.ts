// A per-sandbox relay: grpc-js dials a private unix socket, the relay dials QEMU's agent socket and runs the resync
// handshake there, so every gRPC connection starts on a clean guest session (public grpc-js API only).
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { sleep } from '../timing/index.js';
import { ACK_MAGIC, HANDSHAKE_TOKEN_BYTES, SYNC_MAGIC } from './wire.js';

export interface AgentRelayOptions {
  /** QEMU's chardev socket of the agent port. */
  readonly agentSocket: string;
  readonly logger: Logger;
  /** Pause between dials while the socket is not there yet (VM booting). */
  readonly dialRetryMs?: number;
}

/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

/**
 * Where the relay listens: beside QEMU's agent socket, in the sandbox's VM state dir, so a daemon killed with -9
 * leaves nothing outside that dir (it goes with the dir on destroy). Only when that path would not fit sun_path
 * does it fall back to a private temp dir, which close() removes.
 */
export function relaySocketPath(agentSocket: string): string {
  // Named after the agent socket: two agent sockets sharing a dir (tests) must not share a relay.
  return join(dirname(agentSocket), `relay-${basename(agentSocket)}`);
}

const ACK_FRAME_BYTES = ACK_MAGIC.length + HANDSHAKE_TOKEN_BYTES;
/** Stale bytes we are willing to skip before an ACK before deciding the session is garbage. */
const MAX_STALE_BYTES = 64 * 1024 * 1024;

/**
 * One relay per sandbox. QEMU serves one host connection at a time, so a new downstream connection replaces the
 * previous pair. Handshake: send SYNC + fresh token, drop everything until ACK + that token, then pipe both ways.
 */
export class AgentRelay {
  readonly #options: AgentRelayOptions;
  readonly #server: Server;
  /** The private temp dir of the fallback path, removed on close; undefined beside the agent socket. */
  readonly #tempDir: string | undefined;
  readonly #path: string;
  #current: { down: Socket; up: Socket | undefined } | undefined;
  #closed = false;
  #handshakes = 0;

  private constructor(options: AgentRelayOptions, server: Server, path: string, tempDir: string | undefined) {
    this.#options = options;
    this.#server = server;
    this.#path = path;
    this.#tempDir = tempDir;
  }

  /**
   * Listens beside the agent socket (see relaySocketPath), replacing a stale socket a killed daemon left there:
   * the state dir's lock makes this daemon the only one serving the sandbox.
   */
  static async open(options: AgentRelayOptions): Promise<AgentRelay> {
    let path = relaySocketPath(options.agentSocket);
    let tempDir: string | undefined;
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
      tempDir = await mkdtemp(join(tmpdir(), 'sbx-agent-'));
      path = join(tempDir, 'relay.sock');
    } else {
      await rm(path, { force: true });
    }
    const server = createServer();
    const relay = new AgentRelay(options, server, path, tempDir);
    server.on('connection', (down) => relay.#accept(down));
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      if (tempDir) await rm(tempDir, { recursive: true, force: true });
      throw err;
    }
    return relay;
  }

  /** Path of the relay's unix socket. */
  get socketPath(): string {
    return this.#path;
  }

  /** gRPC target of the relay ("unix:/…"). */
  get target(): string {
    return `unix:${this.#path}`;
  }

  /** Completed handshakes so far (one per guest session this relay opened). */
  get handshakes(): number {
    return this.#handshakes;
  }

  /** Drops the current connection pair (grpc-js reconnects through a new handshake). */
  dropConnection(): void {
    if (!this.#current) return;
    this.#current.up?.destroy();
    this.#current.down.destroy();
    this.#current = undefined;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.dropConnection();
    // libuv unlinks the socket file when the listening handle closes.
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    if (this.#tempDir) await rm(this.#tempDir, { recursive: true, force: true });
  }

  #accept(down: Socket): void {
    if (this.#closed) {
      down.destroy();
      return;
    }
    this.dropConnection();
    const pair: { down: Socket; up: Socket | undefined } = { down, up: undefined };
    this.#current = pair;
    const pending: Buffer[] = [];
    const collect = (chunk: Buffer) => pending.push(chunk);
    down.on('data', collect);
    down.on('error', () => {});
    down.on('close', () => {
      pair.up?.destroy();
      if (this.#current === pair) this.#current = undefined;
    });
    void this.#dial(pair).then((up) => {
      if (!up) return;
      const token = randomBytes(HANDSHAKE_TOKEN_BYTES);
      const expected = Buffer.concat([ACK_MAGIC, token]);
      let received = Buffer.alloc(0);
      const onHandshakeData = (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        const at = received.indexOf(expected);
        if (at < 0) {
          if (received.length > MAX_STALE_BYTES) up.destroy();
          // Keep only a tail that may hold a split ACK.
          else received = received.subarray(Math.max(0, received.length - (ACK_FRAME_BYTES - 1)));
          return;
        }
        up.off('data', onHandshakeData);
        this.#handshakes++;
        const rest = received.subarray(at + ACK_FRAME_BYTES);
        down.off('data', collect);
        if (rest.length > 0) down.write(rest);
        for (const chunk of pending) up.write(chunk);
        down.pipe(up);
        up.pipe(down);
      };
      up.on('data', onHandshakeData);
      up.write(Buffer.concat([SYNC_MAGIC, token]));
    });
  }

  /** Dials the agent socket until it answers or the downstream side is gone. */
  async #dial(pair: { down: Socket; up: Socket | undefined }): Promise<Socket | undefined> {
    const retryMs = this.#options.dialRetryMs ?? 100;
    let logged = false;
    while (!pair.down.destroyed && this.#current === pair && !this.#closed) {
      const up = await new Promise<Socket | undefined>((resolve) => {
        const socket = createConnection(this.#options.agentSocket);
        socket.once('connect', () => {
          socket.off('error', onError);
          resolve(socket);
        });
        const onError = (err: NodeJS.ErrnoException) => {
          if (!logged) {
            this.#options.logger.debug({ err, step: 'agent dial' }, 'agent socket not ready; retrying');
            logged = true;
          }
          socket.destroy();
          resolve(undefined);
        };
        socket.once('error', onError);
      });
      if (up) {
        if (pair.down.destroyed || this.#current !== pair) {
          up.destroy();
          return undefined;
        }
        pair.up = up;
        up.on('error', () => {});
        up.on('close', () => pair.down.destroy());
        return up;
      }
      await sleep(retryMs);
    }
    return undefined;
  }
}
