#!/usr/bin/env node
// sandboxd: the daemon binary (flags and env, signals, exit codes); the composition lives in daemon.ts.
import { Command, Option } from 'commander';
import pino from 'pino';
import { SandboxdError } from '../errors/index.js';
import { logLimitsFrom } from '../logs/index.js';
import { DEFAULT_SOCKET, DEFAULT_STATE_DIR, daemonVersion, startDaemon } from './daemon.js';

const program = new Command('sandboxd')
  .description(
    'The sandboxd daemon: sandboxes as QEMU VMs, containers under crun in the guest, an event-sourced log.',
  )
  .version(daemonVersion())
  .addOption(
    new Option('--state-dir <dir>', 'state directory (event log, per-sandbox dirs)')
      .env('SANDBOXD_STATE_DIR')
      .default(DEFAULT_STATE_DIR),
  )
  .addOption(
    new Option('--socket <path>', 'JSON-RPC unix socket').env('SANDBOXD_SOCKET').default(DEFAULT_SOCKET),
  )
  .addOption(
    new Option('--log-level <level>', 'pino level')
      .choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
      .env('SANDBOXD_LOG_LEVEL')
      .default('info'),
  )
  .addOption(
    new Option('--metrics-address <host:port>', 'serve Prometheus metrics at http://host:port/metrics').env(
      'SANDBOXD_METRICS_ADDRESS',
    ),
  )
  .addOption(
    new Option(
      '--log-max-size <size>',
      'host log of each process: bytes per file (k, m, g; default 10m)',
    ).env('SANDBOXD_LOG_MAX_SIZE'),
  )
  .addOption(
    new Option(
      '--log-max-files <n>',
      'host log of each process: files kept, the current one included (default 5)',
    ).env('SANDBOXD_LOG_MAX_FILES'),
  )
  .addOption(
    new Option(
      '--templates',
      'start sandboxes from a VM template of their shape when one is built (sandboxctl template build); else cold',
    ).env('SANDBOXD_TEMPLATES'),
  )
  .addOption(
    new Option(
      '--templates-dir <dir>',
      'where VM templates are built and kept (default: beside the guest images)',
    ).env('SANDBOXD_TEMPLATES_DIR'),
  )
  .parse(process.argv);

const opts = program.opts<{
  stateDir: string;
  socket: string;
  logLevel: string;
  metricsAddress?: string;
  logMaxSize?: string;
  logMaxFiles?: string;
  templates?: boolean;
  templatesDir?: string;
}>();
const logger = pino({ name: 'sandboxd', level: opts.logLevel }, pino.destination({ fd: 2, sync: true }));

let stopping = false;
try {
  const daemon = await startDaemon({
    stateDir: opts.stateDir,
    socketPath: opts.socket,
    ...(opts.metricsAddress ? { metricsAddress: opts.metricsAddress } : {}),
    ...(opts.templates ? { templates: true } : {}),
    ...(opts.templatesDir ? { templatesDir: opts.templatesDir } : {}),
    logLimits: logLimitsFrom(opts.logMaxSize, opts.logMaxFiles),
    logger,
    // Fail-stop: nothing is retried after a failed log write; VMs keep running and the restart replays.
    onFatal: () => process.exit(1),
  });
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'signal received');
    daemon.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.fatal({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
} catch (err) {
  const e = err as Error;
  logger.fatal({ err: e }, 'sandboxd could not start');
  process.stderr.write(`sandboxd: ${e.message}\n`);
  process.exit(err instanceof SandboxdError && err.kind === 'StateDirInUse' ? 10 : 1);
}
