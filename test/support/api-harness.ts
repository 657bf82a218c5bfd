// Test harness: the API server over the REAL actor runtime (fake world, memory store) on a temp socket,
// plus raw line clients for protocol tests.

import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before } from 'node:test';
import type { RuntimeOptions } from '../../src/actors/index.js';
import {
  type ApiClient,
  type ApiServer,
  type ApiServerOptions,
  connectApi,
  createApiServer,
  RpcCallError,
} from '../../src/api/index.js';
import { type Harness as ActorsHarness, makeHarness } from './actors-harness.js';

export { gate } from './gate.js';

export interface Harness extends ActorsHarness {
  readonly socketPath: string;
  readonly server: ApiServer;
  /** A bundle container.create accepts (config.json with root and args, rootfs/). */
  readonly apiBundle: string;
  close(): Promise<void>;
}

export async function startHarness(
  options: { runtime?: Partial<RuntimeOptions>; server?: Partial<ApiServerOptions> } = {},
): Promise<Harness> {
  const actors = await makeHarness(options.runtime);
  const socketPath = join(actors.dir, 'api.sock');
  const server = createApiServer({
    runtime: actors.runtime,
    events: actors.store,
    accel: () => actors.hypervisor.accel(),
    facts: {
      version: 'test',
      pid: process.pid,
      startedAt: new Date().toISOString(),
      stateDir: actors.stateDir,
      socket: socketPath,
    },
    ...options.server,
  });
  await server.listen(socketPath);
  const apiBundle = await writeMinimalBundle(join(actors.dir, 'api-bundle'));
  return Object.assign(actors, {
    socketPath,
    server,
    apiBundle,
    async close() {
      await server.close({ graceMs: 1000 });
      // Deleting unbinds the volumes the runtime bound on the host, so the temp dir can go.
      for (const s of actors.runtime.listSandboxes()) {
        await actors.runtime.deleteSandbox(s.id, { force: true }).catch(() => undefined);
      }
      await actors.cleanup();
    },
  });
}

type HarnessOptions = Parameters<typeof startHarness>[0];

/**
 * A suite's harness and (unless `client: false`) a connected client, opened before its tests and closed
 * after them; `bind` receives them once open.
 */
export function withApi(
  bind: (api: { h: Harness; c: ApiClient }) => void,
  options: HarnessOptions & { client?: boolean } = {},
): void {
  let h: Harness | undefined;
  let c: ApiClient | undefined;
  before(async () => {
    h = await startHarness(options);
    c = options.client === false ? undefined : await connectApi(h.socketPath);
    bind({ h, c: c as ApiClient });
  });
  after(async () => {
    c?.close();
    await h?.close();
  });
}

/** A raw connection: send lines, read parsed lines back. */
export interface RawClient {
  readonly socket: Socket;
  send(text: string): void;
  /** The next parsed line (waits up to timeoutMs). */
  next(timeoutMs?: number): Promise<unknown>;
  /** Sends one request and returns the next line. */
  request(payload: unknown): Promise<unknown>;
  close(): void;
}

export function rawClient(socketPath: string): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const lines: unknown[] = [];
    const waiters: ((v: unknown) => void)[] = [];
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf('\n');
      while (nl !== -1) {
        const line = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        const w = waiters.shift();
        if (w) w(line);
        else lines.push(line);
        nl = buf.indexOf('\n');
      }
    });
    socket.once('error', reject);
    socket.once('connect', () => {
      const client: RawClient = {
        socket,
        send: (text) => socket.write(text),
        next: (timeoutMs = 5000) =>
          new Promise((res, rej) => {
            if (lines.length > 0) return res(lines.shift());
            const timer = setTimeout(() => rej(new Error('no line within timeout')), timeoutMs);
            waiters.push((v) => {
              clearTimeout(timer);
              res(v);
            });
          }),
        request(payload) {
          socket.write(`${JSON.stringify(payload)}\n`);
          return client.next();
        },
        close: () => socket.destroy(),
      };
      resolve(client);
    });
  });
}

/**
 * Connects, writes `text`, half-closes (as `printf … | socat` does at the end of its input) and returns
 * every line the server sent before it closed its side; fails if the server does not close within timeoutMs.
 */
export function halfClose(socketPath: string, text: string, timeoutMs = 5000): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server did not close within ${timeoutMs} ms; got ${JSON.stringify(buf)}`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buf += chunk;
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.once('end', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(
        buf
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l)),
      );
    });
    socket.once('connect', () => socket.end(text));
  });
}

/** Awaits `p` and returns the RpcCallError it must be refused with; fails the test if it succeeds. */
export async function refused(p: Promise<unknown>): Promise<RpcCallError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RpcCallError, String(err));
    return err;
  }
  assert.fail('expected the call to be refused');
}

/** Writes the smallest bundle the API accepts at `dir` (config.json with root and args, an empty rootfs); returns `dir`. */
export async function writeMinimalBundle(dir: string): Promise<string> {
  await mkdir(join(dir, 'rootfs', 'bin'), { recursive: true });
  await writeFile(
    join(dir, 'config.json'),
    JSON.stringify({ ociVersion: '1.0.2', root: { path: 'rootfs' }, process: { args: ['sh'] } }),
  );
  return dir;
}
