// The guest agent's entry (bundled into /opt/sandboxd/agent.mjs): open the agent port from the env and serve forever.
import pino from 'pino';
import { openPortDevice } from './channel.js';
import { defaultGuestPaths } from './container-record.js';
import { openOutputPortDevice } from './output-port.js';
import { startGuestAgent } from './server.js';

const env = process.env;
const logger = pino(
  { level: env.SANDBOXD_LOG_LEVEL ?? 'info', base: { component: 'guest-agent' } },
  pino.destination(2),
);

async function main(): Promise<void> {
  const portPath = env.SANDBOXD_AGENT_PORT;
  const protoPath = env.SANDBOXD_AGENT_PROTO ?? '/opt/sandboxd/agent.proto';
  const sharedDir = env.SANDBOXD_SHARED ?? '/run/sandboxd/shared';
  if (!portPath) {
    logger.fatal('SANDBOXD_AGENT_PORT is not set');
    process.exit(2);
  }
  const port = await openPortDevice(portPath);
  // Optional: without it (an older host's VM) output goes in the gRPC streams.
  const outputPortPath = env.SANDBOXD_OUTPUT_PORT;
  const outputPort = outputPortPath
    ? await openOutputPortDevice(outputPortPath).catch((err: unknown) => {
        logger.warn({ err, port: outputPortPath }, 'cannot open the output port; output goes over gRPC');
        return undefined;
      })
    : undefined;
  startGuestAgent({
    port,
    outputPort,
    protoPath,
    paths: defaultGuestPaths(sharedDir),
    logger,
    imageVersion: env.SANDBOXD_IMAGE_VERSION ?? '',
    onDestroy: () => {
      // exit() joins libuv's thread pool, so it completes once the host hangs up and the port read returns 0.
      logger.info('sandbox destroyed; exiting so the guest powers off');
      logger.flush();
      process.exit(0);
    },
  });
  logger.info({ port: portPath, outputPort: outputPort ? outputPortPath : null }, 'guest agent serving');
}

process.on('uncaughtException', (err) => {
  logger.fatal({ err }, 'uncaught exception');
  process.exit(1);
});

main().catch((err: unknown) => {
  logger.fatal({ err }, 'guest agent failed to start');
  process.exit(1);
});
