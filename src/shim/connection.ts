// The shim server's one link to sandboxd's API. When the daemon restarts (killed -9, upgraded) the link
// comes back by itself while tasks remain: calls made meanwhile wait for it (bounded), the event bridge
// resumes from its last seq, stdio follows resume from their offsets. A daemon never seen fails at once.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { type ApiClient, connectApi, DaemonUnreachable } from '../api/index.js';

/** How long a call waits for a daemon that was reachable before to come back. */
const COMEBACK_MS = 30_000;

export interface ApiLinkOptions {
  readonly socket: string;
  readonly log: Logger;
  /** Runs on each new connection before any call uses it (the event bridge subscribes here). */
  readonly onConnect: (client: ApiClient) => Promise<void>;
  /** Whether the link should come back by itself after a drop (tasks remain). */
  readonly wanted: () => boolean;
}

export class ApiLink {
  private current: Promise<ApiClient> | undefined;
  private live: ApiClient | undefined;
  private seen = false;
  private closed = false;
  private reconnecting = false;
  private readonly listeners: ((client: ApiClient) => void)[] = [];

  constructor(private readonly o: ApiLinkOptions) {}

  /** The connection, made (or awaited while the daemon comes back) if need be. */
  get(): Promise<ApiClient> {
    if (this.closed) return Promise.reject(new DaemonUnreachable(this.o.socket, 'the shim is exiting'));
    if (this.current) return this.current;
    const p = this.connect();
    this.current = p;
    p.catch(() => {
      if (this.current === p) this.current = undefined;
    });
    return p;
  }

  /** Called with every connection made after the first (a stdio follow resumes on it). */
  onReconnect(listener: (client: ApiClient) => void): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    (await this.current?.catch(() => undefined))?.close();
  }

  private async connect(): Promise<ApiClient> {
    const deadline = Date.now() + (this.seen ? COMEBACK_MS : 0);
    for (let delay = 100; ; delay = Math.min(delay * 2, 1000)) {
      try {
        return await this.once();
      } catch (err) {
        if (!(err instanceof DaemonUnreachable) || this.closed || Date.now() + delay > deadline) throw err;
        await sleep(delay);
      }
    }
  }

  private async once(): Promise<ApiClient> {
    const client = await connectApi(this.o.socket);
    const again = this.seen;
    client.onClose(() => {
      if (this.live === client) this.dropped();
    });
    try {
      await this.o.onConnect(client);
    } catch (err) {
      client.close();
      throw err;
    }
    this.seen = true;
    this.live = client;
    if (again) {
      this.o.log.info('sandboxd connection back');
      for (const l of [...this.listeners]) l(client);
    }
    return client;
  }

  private dropped(): void {
    this.current = undefined;
    this.live = undefined;
    this.o.log.warn('sandboxd connection closed');
    if (!this.closed && this.o.wanted()) void this.comeBack();
  }

  /** Reconnects in the background (exits while sandboxd was down are reported once it is back). */
  private async comeBack(): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    try {
      while (!this.closed && this.o.wanted() && this.current === undefined) {
        try {
          await this.get();
        } catch (err) {
          this.o.log.warn({ err: (err as Error).message }, 'sandboxd still unreachable: retrying');
          await sleep(1000);
        }
      }
    } finally {
      this.reconnecting = false;
    }
  }
}
