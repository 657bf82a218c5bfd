// `containerd-shim-sandboxd-v1 start` and `delete`: the two short-lived commands containerd runs.
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { connectApi } from '../api/index.js';
import { TtrpcClient } from '../ttrpc/index.js';
import type { ShimArgs } from './args.js';
import {
  containerIdFor,
  LABEL_NAMESPACE,
  LABEL_TASK,
  podSandboxIdFor,
  SOCKET_DIR,
  shimSocketPath,
} from './naming.js';
import { encode } from './protos.js';
import { unmountRootfs } from './rootfs.js';
import { isLive, pidFileOf, SHIM_SERVICE } from './server.js';
import { CRI_CONTAINER_TYPE, CRI_SANDBOX_ID } from './service.js';

async function reserve(socketPath: string): Promise<boolean> {
  try {
    const c = await TtrpcClient.connect(socketPath, { connectTimeoutMs: 2000 });
    try {
      await c.call(SHIM_SERVICE, 'Reserve', new Uint8Array(), { timeoutMs: 5000 });
      return true;
    } finally {
      c.close();
    }
  } catch {
    return false;
  }
}

/**
 * Finds this containerd's shim server (or starts it, detached in its own session), reserves a place for the
 * coming Create, writes `address` in the bundle (cwd) and returns the address to print.
 */
export async function startCommand(args: ShimArgs, entry: string, log: Logger): Promise<string> {
  const socketPath = shimSocketPath(args.address);
  if (!(await reserve(socketPath))) {
    await mkdir(SOCKET_DIR, { recursive: true, mode: 0o711 });
    const out = openSync(`${socketPath}.log`, 'a', 0o600);
    const child = spawn(
      process.execPath,
      [
        entry,
        '-namespace',
        args.namespace,
        '-address',
        args.address,
        '-publish-binary',
        args.publishBinary,
        'serve',
      ],
      { detached: true, stdio: ['ignore', out, out], cwd: '/', env: process.env },
    );
    child.unref();
    log.info({ pid: child.pid, socketPath }, 'shim server started');
    const deadline = Date.now() + 15_000;
    while (!(await reserve(socketPath))) {
      if (Date.now() > deadline) throw new Error(`shim server did not come up on ${socketPath}`);
      await sleep(25);
    }
  }
  const address = `unix://${socketPath}`;
  await writeFile(join(process.cwd(), 'address'), address, { mode: 0o600 });
  return address;
}

/**
 * Cleanup after a dead shim: force-deletes the task's container in sandboxd (and the sandbox it made),
 * unmounts the rootfs, and returns the DeleteResponse bytes containerd reads from stdout.
 */
export async function deleteCommand(
  args: ShimArgs,
  sandboxdSocket: string,
  log: Logger,
): Promise<Uint8Array> {
  const bundle = args.bundle || process.cwd();
  let annotations: Record<string, string> = {};
  try {
    annotations =
      (
        JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as {
          annotations?: Record<string, string>;
        }
      ).annotations ?? {};
  } catch {
    // a bundle half gone: fall back to the labels
  }
  const api = await connectApi(sandboxdSocket);
  try {
    const containerId = containerIdFor(args.id);
    const joinsPod = annotations[CRI_CONTAINER_TYPE] === 'container' && annotations[CRI_SANDBOX_ID];
    if (joinsPod) {
      const sandboxId = podSandboxIdFor(args.namespace, annotations[CRI_SANDBOX_ID] as string);
      await api.call('container.delete', { sandboxId, id: containerId, force: true }).catch(() => undefined);
    } else {
      const list =
        await api.call<{ id: string; config?: { labels?: Record<string, string> } }[]>('sandbox.list');
      for (const s of list) {
        const l = s.config?.labels ?? {};
        if (l[LABEL_NAMESPACE] !== args.namespace || l[LABEL_TASK] !== args.id) continue;
        log.info({ sandboxId: s.id }, 'deleting the sandbox of a dead shim');
        await api.call('sandbox.delete', { id: s.id, force: true });
      }
    }
  } finally {
    api.close();
  }
  await unmountRootfs(bundle).catch(() => undefined);
  // After a killed server (kill -9 leaves its socket and pid file), nothing of it stays; a live server (other
  // tasks, or this delete after a failed start) keeps its own.
  const socketPath = shimSocketPath(args.address);
  if (!(await isLive(socketPath))) {
    await unlink(socketPath).catch(() => undefined);
    await unlink(pidFileOf(socketPath)).catch(() => undefined);
  }
  const now = Date.now();
  return encode('containerd.task.v2.DeleteResponse', {
    pid: 0,
    exitStatus: 128 + 9,
    exitedAt: { seconds: Math.floor(now / 1000), nanos: (now % 1000) * 1e6 },
  });
}
