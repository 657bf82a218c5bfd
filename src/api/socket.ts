// The API's unix socket: whether a server answers on a path, and listening on one (mode 0600, a stale file replaced).
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { SandboxdError } from '../errors/index.js';

/** Is a live server answering on this socket path? (A stale file from a crashed daemon refuses.) */
export function socketIsLive(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(true);
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

/**
 * A server listening on `socketPath` (mode 0600 from the start: the umask covers the window before chmod), each
 * connection half-open capable and handed to `onConnection`. A stale socket file is replaced; one a live server
 * answers on is refused with StateDirInUse.
 */
/** StateDirInUse when a running sandboxd answers on `socketPath` (a second daemon must not take it over). */
export async function refuseLiveSocket(socketPath: string): Promise<void> {
  if (await socketIsLive(socketPath)) {
    throw new SandboxdError(
      'StateDirInUse',
      'UNAVAILABLE',
      `socket ${socketPath} is served by a running sandboxd; stop it or choose another --socket`,
      { socket: socketPath },
    );
  }
}

export async function listenOnSocket(
  socketPath: string,
  onConnection: (socket: Socket) => void,
): Promise<Server> {
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await refuseLiveSocket(socketPath);
  await unlink(socketPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  const srv = createServer({ allowHalfOpen: true }, onConnection);
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(socketPath, () => {
        srv.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldMask);
  }
  await chmod(socketPath, 0o600);
  return srv;
}
