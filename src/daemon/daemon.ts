// The daemon's composition: state dir, event log, QEMU, agent client, guest image, runtime (recovered), API socket.
import { readFileSync } from 'node:fs';
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import { createRuntime, type RecoveryReport, type RuntimeHandle } from '../actors/index.js';
import type { Agent } from '../agent/index.js';
import * as agentModule from '../agent/index.js';
import {
  type ApiServer,
  createApiServer,
  forgetDaemon,
  liveDaemonOf,
  type MetricsSources,
  recordDaemon,
  refuseLiveSocket,
  renderMetrics,
} from '../api/index.js';
import { Internal, InvalidArgument, SandboxdError } from '../errors/index.js';
import { createQemuHypervisor, type GuestImagePaths, type Hypervisor } from '../hypervisor/index.js';
import { defaultImageCacheDir, ensureGuestImage } from '../image/index.js';
import { type LogLimits, OutputKeeper } from '../logs/index.js';
import { checkTransitions } from '../machines/index.js';
import { type EventStore, openLevelEventStore } from '../store/index.js';
import { TemplateStore } from '../templates/index.js';

export const DEFAULT_STATE_DIR = '/var/lib/sandboxd';
export const DEFAULT_SOCKET = '/run/sandboxd/sandboxd.sock';

export interface DaemonOptions {
  readonly stateDir: string;
  readonly socketPath: string;
  readonly logger?: Logger;
  /** Where guest images are cached (default: the image module's default). */
  readonly imageCacheDir?: string;
  /** `host:port` (or a bare port, on 127.0.0.1) to serve Prometheus metrics at /metrics over HTTP; off when absent. */
  readonly metricsAddress?: string;
  /** Size per host log file and files kept per process (default DEFAULT_LOG_LIMITS: 10 MiB × 5). */
  readonly logLimits?: LogLimits;
  /**
   * Start sandboxes from a built template of their shape (issue 18), else cold. Off by default: a clone shares
   * its template's guest kernel state (reseeded and re-clocked, see src/actors/restore.ts), which not every
   * deployment wants, and templates are built explicitly (sandboxctl template build).
   */
  readonly templates?: boolean;
  /** Where templates live (default `<imageCacheDir>/templates`). */
  readonly templatesDir?: string;
  /**
   * Called once if the event log becomes unusable (a failed fsync is never retried): the binary exits
   * and the next start replays the log. Default: log only.
   */
  readonly onFatal?: (err: unknown) => void;
  /**
   * Replacements for the real parts. Only for tests of the daemon's own plumbing; the daemon binary
   * never sets them, so its path is always QEMU + the gRPC agent.
   */
  readonly parts?: {
    readonly hypervisor?: Hypervisor;
    readonly agent?: Agent;
    readonly image?: () => Promise<GuestImagePaths>;
  };
}

export interface Daemon {
  readonly stateDir: string;
  readonly socketPath: string;
  readonly recovery: RecoveryReport;
  readonly runtime: RuntimeHandle;
  /** Graceful stop: no new requests, in-flight ones finish, log flushed; sandboxes keep running. Idempotent. */
  close(): Promise<void>;
}

/** This package's version (from package.json, found upward from this file). */
export function daemonVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'sandboxd' && pkg.version) return pkg.version;
    } catch {
      // not here; go up
    }
    dir = dirname(dir);
  }
  return '0.0.0';
}

function realAgent(logger: Logger): Agent {
  // Read through the namespace so the daemon builds while the gRPC client is being written.
  const create = (
    agentModule as unknown as {
      createGrpcAgent?: (o: { logger?: Logger; guestOutputBufferBytes?: number }) => Agent;
    }
  ).createGrpcAgent;
  if (!create) throw new Internal('agent', 'the gRPC agent client (createGrpcAgent) is not built in');
  // Bytes each guest keeps per output stream while the daemon does not read (README: Logs); tests make it tiny.
  const buffer = Number(process.env.SANDBOXD_GUEST_OUTPUT_BUFFER ?? 0);
  return create({
    logger: logger.child({ component: 'agent' }),
    ...(Number.isInteger(buffer) && buffer > 0 ? { guestOutputBufferBytes: buffer } : {}),
  });
}

/** What the daemon built itself and must close on the way out: QMP sessions and agent connections keep the process alive. */
interface Closeable {
  close(): Promise<void>;
}

function closeableOf(part: unknown): Closeable | undefined {
  const close = (part as Partial<Closeable> | undefined)?.close;
  return typeof close === 'function' ? { close: () => close.call(part) } : undefined;
}

/** `host:port`, `[v6]:port` or a bare port (on 127.0.0.1). Throws InvalidArgument('metricsAddress'). */
export function parseListenAddress(address: string): { host: string; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:]+\]|[^:\s]+):)?(\d{1,5})$/.exec(address.trim());
  const port = Number(m?.[2]);
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidArgument('metricsAddress', `${JSON.stringify(address)} is not host:port`);
  }
  return { host: m[1]?.replace(/^\[|\]$/g, '') ?? '127.0.0.1', port };
}

/** Serves GET /metrics (Prometheus text) on `address`; resolves once it listens. */
async function serveMetrics(address: string, sources: MetricsSources, logger: Logger): Promise<HttpServer> {
  const { host, port } = parseListenAddress(address);
  const server = createHttpServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
      return;
    }
    renderMetrics(sources).then(
      (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text),
      (err: unknown) => {
        logger.warn({ err }, 'rendering metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new InvalidArgument('metricsAddress', `cannot listen on ${host}:${port}: ${err.code ?? err.message}`),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  logger.info({ host, port }, 'metrics at /metrics');
  return server;
}

async function closeHttp(server: HttpServer | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Resolves once the image is ready; one build at a time, retried on the next call after a failure. */
function memoImage(logger: Logger, cacheDir?: string): () => Promise<GuestImagePaths> {
  let pending: Promise<GuestImagePaths> | undefined;
  return () => {
    pending ??= ensureGuestImage({
      logger: logger.child({ component: 'image' }),
      ...(cacheDir ? { cacheDir } : {}),
    }).catch((err: unknown) => {
      pending = undefined;
      throw err;
    });
    return pending;
  };
}

/**
 * Starts sandboxd: takes the state dir (0700; StateDirInUse if another daemon holds it), refuses a
 * socket a live daemon serves, recovers every sandbox (replay + reconcile) and only then listens
 * (socket 0600, a stale file replaced).
 */
export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const logger = options.logger ?? pino({ name: 'sandboxd' }, pino.destination(2));
  const { stateDir, socketPath } = options;
  // Refused before anything is created or opened: a second daemon leaves no dir, no empty log, and does not
  // make LevelDB rotate the live daemon's LOG (it renames LOG before it takes the lock).
  await refuseLiveSocket(socketPath);
  const holder = await liveDaemonOf(stateDir);
  if (holder) {
    throw new SandboxdError(
      'StateDirInUse',
      'UNAVAILABLE',
      `state dir ${stateDir} is in use by another sandboxd (pid ${holder.pid}, socket ${holder.socket}); stop it or choose another --state-dir`,
      { dir: stateDir, pid: holder.pid, socket: holder.socket },
    );
  }
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await chmod(stateDir, 0o700);

  const store: EventStore = await openLevelEventStore(join(stateDir, 'events'), {
    logger: logger.child({ component: 'store' }),
  });
  let runtime: RuntimeHandle | undefined;
  let api: ApiServer | undefined;
  let metrics: HttpServer | undefined;
  let logs: OutputKeeper | undefined;
  // Only the parts built here are closed; injected ones belong to whoever passed them.
  const owned: Closeable[] = [];
  /** Detaches from the VMs and agents (they keep running), one failure not stopping the others. */
  const closeOwned = async () => {
    for (const part of owned.splice(0)) {
      await part.close().catch((err: unknown) => logger.warn({ err }, 'closing a driver failed'));
    }
  };
  try {
    let hypervisor = options.parts?.hypervisor;
    if (!hypervisor) {
      const qemu = createQemuHypervisor({ logger: logger.child({ component: 'hypervisor' }) });
      owned.push(qemu);
      hypervisor = qemu;
    }
    let agent = options.parts?.agent;
    if (!agent) {
      agent = realAgent(logger);
      const closeable = closeableOf(agent);
      if (closeable) owned.push(closeable);
    }
    const image = options.parts?.image ?? memoImage(logger, options.imageCacheDir);
    // Warm the image cache in the background so the first boot does not pay for it.
    if (!options.parts?.image) {
      image().catch((err: unknown) =>
        logger.warn({ err }, 'guest image not ready yet; sandbox starts will retry'),
      );
    }

    // Templates live beside the images they were booted from; a build killed with its daemon is swept here.
    const templates = new TemplateStore({
      dir: options.templatesDir ?? join(options.imageCacheDir ?? defaultImageCacheDir(), 'templates'),
      image,
      agent,
      accel: () => hypervisor.accel(),
      logger,
    });
    owned.push(templates);
    templates.sweep().catch((err: unknown) => logger.warn({ err }, 'sweeping template builds failed'));

    const started = performance.now();
    runtime = await createRuntime({
      store,
      hypervisor,
      agent,
      stateDir,
      image,
      ...(options.templates ? { templates: { find: (shape) => templates.restorable(shape) } } : {}),
      logger: logger.child({ component: 'runtime' }),
    });
    const recovery = runtime.recovery;
    logger.info(
      { ...recovery, ms: Math.round(performance.now() - started) },
      'recovered: replayed the log and reconciled with the world',
    );

    // Every process's output on the host, read as produced: the guest never has to drop while the daemon runs.
    const readOutput = agent.readOutput?.bind(agent);
    if (readOutput) {
      logs = new OutputKeeper({
        runtime,
        agent: Object.assign(Object.create(agent) as Agent, { readOutput }),
        events: store,
        stateDir,
        ...(options.logLimits ? { limits: options.logLimits } : {}),
        logger: logger.child({ component: 'logs' }),
      });
      await logs.start();
    }

    const facts = {
      version: daemonVersion(),
      pid: process.pid,
      startedAt: new Date().toISOString(),
      stateDir,
      socket: socketPath,
      templates: options.templates ? ('on' as const) : ('off' as const),
    };
    api = createApiServer({
      runtime,
      events: store,
      facts,
      logger: logger.child({ component: 'api' }),
      checkTransitions,
      accel: () => hypervisor.accel(),
      ...(logs ? { logs } : {}),
      templates,
    });
    await api.listen(socketPath);
    // After listening: whoever reads the record finds a live socket.
    await recordDaemon(stateDir, {
      pid: facts.pid,
      socket: socketPath,
      startedAt: facts.startedAt,
      version: facts.version,
    });
    if (options.metricsAddress !== undefined) {
      const server = api;
      const sources: MetricsSources = {
        runtime,
        events: store,
        facts,
        accel: () => hypervisor.accel(),
        traffic: () => server.traffic(),
      };
      metrics = await serveMetrics(options.metricsAddress, sources, logger.child({ component: 'metrics' }));
    }
    logger.info({ socket: socketPath, stateDir, accel: runtime.accel }, 'ready');

    // The log's live feed errors when a write failed: the store is unusable, so the daemon must go.
    const watch = store.subscribe(store.lastSeq() + 1).subscribe({
      error: (err: unknown) => {
        logger.fatal({ err }, 'the event log failed; exiting so that a restart replays it');
        options.onFatal?.(err);
      },
    });

    let closing: Promise<void> | undefined;
    const rt = runtime;
    const server = api;
    const keeper = logs;
    return {
      stateDir,
      socketPath,
      recovery,
      runtime: rt,
      close() {
        closing ??= (async () => {
          logger.info('shutting down: no new requests, finishing in-flight ones; sandboxes keep running');
          watch.unsubscribe();
          await closeHttp(metrics);
          await server.close({ graceMs: 60_000 });
          await keeper?.close();
          await rt.shutdown();
          // After the runtime: its effects may still have used them. The VMs keep running.
          await closeOwned();
          await store.close();
          await forgetDaemon(stateDir).catch(() => undefined);
          await unlink(socketPath).catch(() => undefined);
          logger.info('stopped');
        })();
        return closing;
      },
    };
  } catch (err) {
    await closeHttp(metrics);
    await api?.close({ graceMs: 0 }).catch(() => undefined);
    await logs?.close().catch(() => undefined);
    await runtime?.shutdown().catch(() => undefined);
    await closeOwned();
    await store.close().catch(() => undefined);
    throw err;
  }
}
