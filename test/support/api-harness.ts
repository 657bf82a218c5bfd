// Test harness: an API server over a FAKE runtime on a temp socket, and a raw line client for protocol tests.

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ApiServer, type ApiServerOptions, createApiServer, RpcCallError } from '../../src/api/index.js';
import { createFakeRuntime, type FakeRuntime, type FakeRuntimeOptions } from './fake-runtime.js';

export interface Harness {
  readonly dir: string;
  readonly socketPath: string;
  readonly server: ApiServer;
  readonly runtime: FakeRuntime;
  close(): Promise<void>;
}

export async function startHarness(
  options: { fake?: FakeRuntimeOptions; server?: Partial<ApiServerOptions> } = {},
): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'sandboxd-api-'));
  const socketPath = join(dir, 'api.sock');
  const runtime = createFakeRuntime(options.fake);
  const server = createApiServer({
    runtime,
    events: runtime.store,
    facts: {
      version: 'test',
      pid: process.pid,
      startedAt: new Date().toISOString(),
      stateDir: dir,
      socket: socketPath,
    },
    ...options.server,
  });
  await server.listen(socketPath);
  return {
    dir,
    socketPath,
    server,
    runtime,
    async close() {
      await server.close({ graceMs: 1000 });
      await rm(dir, { recursive: true, force: true });
    },
  };
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
