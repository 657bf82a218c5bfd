// The long-lived shim server: one process per containerd (all its namespaces and pods), serving the Task
// service on a path socket, a client of sandboxd's API, publishing task events to containerd.
import { mkdir, unlink, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Logger } from 'pino';
import type { ApiClient } from '../api/index.js';
import { TtrpcServer } from '../ttrpc/index.js';
import { ApiLink } from './connection.js';
import { toStatus } from './errdefs.js';
import { EventBridge } from './events.js';
import { SOCKET_DIR } from './naming.js';
import { EventPublisher } from './publish.js';
import { initHandlers, type ShimContext, TASK_SERVICE } from './service.js';
import { processHandlers } from './service-exec.js';
import { TaskTable } from './tasks.js';

/** Our own service beside Task: `start` reserves a place so a server about to go idle stays up. */
export const SHIM_SERVICE = 'sandboxd.shim.v1.Shim';
/** How long a server with no task waits before it exits (a start may be on its way). */
const IDLE_GRACE_MS = 2000;

export const DEFAULT_SANDBOXD_SOCKET = '/run/sandboxd/sandboxd.sock';

/** The server's pid file, beside its socket. */
export function pidFileOf(socketPath: string): string {
  return `${socketPath}.pid`;
}

export interface ServeOptions {
  readonly socketPath: string;
  readonly ttrpcAddress: string;
  readonly sandboxdSocket: string;
  readonly log: Logger;
}

/** Whether a server answers on `path` (a socket left by a killed server does not). */
export function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Serves until no task remains; resolves when the server has closed. */
export async function serve(o: ServeOptions): Promise<void> {
  const log = o.log;
  const tasks = new TaskTable();
  const publisher = new EventPublisher(o.ttrpcAddress, (err, event) =>
    log.warn({ err: (err as Error).message, type: event.type }, 'event not taken by containerd: retrying'),
  );
  const bridge = new EventBridge(tasks, publisher, log);
  const link = new ApiLink({
    socket: o.sandboxdSocket,
    log,
    onConnect: (c) => bridge.attach(c),
    wanted: () => !tasks.idle,
  });
  const api = (): Promise<ApiClient> => link.get();

  let exitTimer: NodeJS.Timeout | undefined;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((r) => {
    done = r;
  });
  const server = new TtrpcServer({
    toStatus,
    onCallError: (c, err) => log.info({ method: c.method, err: (err as Error).message }, 'call failed'),
  });
  let closing: Promise<void> | undefined;
  const close = (why: string): Promise<void> => {
    closing ??= (async () => {
      log.info({ why }, 'shim server exiting');
      await server.close({ timeoutMs: 5000 });
      await publisher.close();
      await unlink(o.socketPath).catch(() => undefined);
      await unlink(pidFileOf(o.socketPath)).catch(() => undefined);
      await link.close();
      done();
    })();
    return closing;
  };
  const shim: ShimContext = {
    api,
    link,
    tasks,
    log,
    requestExit() {
      if (exitTimer) clearTimeout(exitTimer);
      exitTimer = setTimeout(() => {
        if (tasks.idle) void close('no task left');
      }, IDLE_GRACE_MS);
    },
  };
  // Ended by an operator (or a test): its socket and pid file go with it. Tasks still running stay in
  // sandboxd; containerd runs `delete` for each, as after any shim death.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      if (exitTimer) clearTimeout(exitTimer);
      void close(signal);
    });
  }
  server.register(TASK_SERVICE, { ...initHandlers(shim), ...processHandlers(shim) });
  server.register(SHIM_SERVICE, {
    Reserve: () => {
      // A start that never comes back with a Create must not keep the server alive forever.
      tasks.reserve(60_000, () => {
        if (tasks.idle) shim.requestExit();
      });
      return new Uint8Array();
    },
  });

  await mkdir(SOCKET_DIR, { recursive: true, mode: 0o711 });
  try {
    await server.listen(o.socketPath, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    if (await isLive(o.socketPath)) {
      log.info('another shim server already serves this containerd');
      return;
    }
    await unlink(o.socketPath);
    await server.listen(o.socketPath, 0o600);
  }
  // Beside the socket: who serves it, for whoever must end it (a test, an operator after containerd is gone).
  await writeFile(pidFileOf(o.socketPath), `${process.pid}\n`, { mode: 0o600 });
  log.info({ socket: o.socketPath, pid: process.pid }, 'shim serving');
  api().catch((err: Error) => log.warn({ err: err.message }, 'sandboxd not reachable yet'));
  shim.requestExit(); // exits after the grace unless a start reserves
  await finished;
}
