// Assembles the guest agent: gRPC server over the channel's host sessions, the container manager and the event log.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { loadAgentService } from '../agent/index.js';
import { AgentChannel, type PortDevice } from './channel.js';
import type { GuestPaths } from './container-record.js';
import { ContainerManager } from './containers.js';
import { GuestEventLog } from './events.js';
import { OutputPort, type OutputPortDevice } from './output-port.js';
import { createHandlers, toImplementation } from './service.js';

export interface GuestAgentOptions {
  readonly port: PortDevice;
  /** The output port (`agent.output.0`), when the VM has one. */
  readonly outputPort?: OutputPortDevice | undefined;
  readonly protoPath: string;
  readonly paths: GuestPaths;
  readonly logger: Logger;
  readonly imageVersion?: string;
  /** Where CopyFile may write; default the share and /tmp. */
  readonly copyRoots?: readonly string[];
  /** Called after DestroySandbox answered (the real agent exits 0 there). */
  readonly onDestroy?: () => void;
  readonly idlePollMs?: number;
}

export interface GuestAgent {
  readonly channel: AgentChannel;
  readonly containers: ContainerManager;
  readonly events: GuestEventLog;
  /** Stops reading the port and closes every session (containers are left as they are). */
  stop(): Promise<void>;
}

const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Starts serving on the port at once; host sessions come and go for as long as it runs. */
export function startGuestAgent(options: GuestAgentOptions): GuestAgent {
  const { logger } = options;
  const service = loadAgentService(options.protoPath);
  const events = new GuestEventLog();
  const containers = new ContainerManager(options.paths, events, logger);
  const outputPort = options.outputPort && new OutputPort(options.outputPort, logger);
  const handlers = createHandlers({
    containers,
    outputPort,
    events,
    sharedDir: options.paths.sharedDir,
    imageVersion: options.imageVersion ?? '',
    copyRoots: options.copyRoots ?? [options.paths.sharedDir, '/tmp'],
    onDestroy: options.onDestroy ?? (() => {}),
  });
  const server = new Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc-node.flow_control_window': 16 * 1024 * 1024,
  });
  server.addService(service, toImplementation(service, handlers, logger));
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  const channel = new AgentChannel({
    port: options.port,
    logger,
    idlePollMs: options.idlePollMs,
    onSession: (stream) => injector.injectConnection(stream),
  });
  channel.start();
  return {
    channel,
    containers,
    events,
    stop: async () => {
      await channel.stop();
      await outputPort?.close();
      injector.destroy();
      server.forceShutdown();
    },
  };
}
