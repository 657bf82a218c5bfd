// AgentService's handlers: typed per RPC, adapted to grpc-js with errors turned into gRPC status + typed-error metadata.
import { once } from 'node:events';
import {
  Metadata,
  type ServerErrorResponse,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  AGENT_VERSION,
  type AgentServiceDefinition,
  ERROR_DETAILS_KEY,
  ERROR_KIND_KEY,
  type Outgoing,
  type RequestOf,
  type ResponseOf,
  type StreamMethodName,
  type UnaryMethodName,
  type WireExitStatus,
} from '../agent/index.js';
import { asSandboxdError, grpcStatusOf, InvalidArgument, InvalidState } from '../errors/index.js';
import { sleep } from '../timing/index.js';
import type { ContainerManager } from './containers.js';
import type { GuestEventLog, NumberedEvent } from './events.js';
import type { OutputBuffer } from './output.js';
import type { OutputPort } from './output-port.js';
import * as system from './system.js';

type UnaryHandler<K extends UnaryMethodName> = (
  request: RequestOf<K>,
  signal: AbortSignal,
) => Promise<Outgoing<ResponseOf<K>>>;
type StreamHandler<K extends StreamMethodName> = (
  request: RequestOf<K>,
  send: (message: Outgoing<ResponseOf<K>>) => Promise<void>,
  signal: AbortSignal,
) => Promise<void>;

/** One function per RPC. */
export type AgentHandlers = { [K in UnaryMethodName]: UnaryHandler<K> } & {
  [K in StreamMethodName]: StreamHandler<K>;
};

export interface HandlerContext {
  readonly containers: ContainerManager;
  /** The output port, when the VM has one (else OpenOutputPort is refused and output goes in the streams). */
  readonly outputPort?: OutputPort | undefined;
  readonly events: GuestEventLog;
  readonly sharedDir: string;
  readonly imageVersion: string;
  /** Where CopyFile may write. */
  readonly copyRoots: readonly string[];
  /** Called after DestroySandbox answered: the agent exits 0 and the guest powers off. */
  readonly onDestroy: () => void;
}

async function streamOutput(
  buffer: OutputBuffer,
  from: number,
  send: (message: { data: Buffer; offset: number; dropped: number }) => Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  // Attached, the reader holds back its unread bytes: the process waits on its pipe rather than lose output.
  const reader = buffer.attach(from);
  try {
    while (!signal.aborted) {
      const chunk = buffer.read(reader);
      if (chunk.data.length > 0) {
        await send({ data: chunk.data, offset: chunk.offset, dropped: buffer.dropped });
        continue;
      }
      if (buffer.finished) return;
      await buffer.waitForMore(reader.offset, signal);
    }
  } finally {
    buffer.detach(reader);
  }
}

/** How long a port read that wrote its END frame waits for the host to cancel it (a stream end could overtake END). */
const PORT_END_LINGER_MS = 60_000;

/** A ReadStdout/ReadStderr: in the stream, or (with the current session's token) over the output port. */
async function readOutput(
  port: OutputPort | undefined,
  buffer: OutputBuffer,
  request: RequestOf<'ReadStdout'>,
  send: (message: Outgoing<ResponseOf<'ReadStdout'>>) => Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  const token = request.outputPortToken;
  if (token.length === 0) return streamOutput(buffer, request.offset, send, signal);
  if (!port?.isCurrent(token)) {
    throw new InvalidState('output port', token.toString('hex'), 'not the current session', 'read');
  }
  const subscription = request.portSubscription;
  await send({ offset: request.offset, dropped: buffer.dropped, portSubscription: subscription });
  const ended = await port.stream(token, subscription, buffer, request.offset, signal);
  if (signal.aborted) return;
  if (!ended) throw new InvalidState('output port', token.toString('hex'), 'ended', 'read');
  await sleep(PORT_END_LINGER_MS, signal);
}

function exitOf(status: { exitCode: number; signal: string; oomKilled: boolean }): WireExitStatus {
  return { exitCode: status.exitCode, signal: status.signal, oomKilled: status.oomKilled };
}

/** The handlers over the container manager and guest system calls. */
export function createHandlers(context: HandlerContext): AgentHandlers {
  const { containers, events } = context;
  return {
    Check: async () => ({
      version: AGENT_VERSION,
      imageVersion: context.imageVersion,
      bootId: events.bootId,
    }),
    GetGuestDetails: () => system.guestDetails(AGENT_VERSION),
    SetGuestDateTime: async (request) => {
      await system.setDateTime(request.sec);
      return {};
    },
    ReseedRandomDev: async (request) => {
      await system.reseedRandom(request.data);
      return {};
    },
    OnlineCPUMem: (request) => system.onlineCpuMem(request.cpus, request.memory),
    MemHotplugByProbe: async (request) => {
      await system.memHotplugByProbe(request.addresses);
      return {};
    },
    CopyFile: async (request) => {
      await system.copyFile(context.copyRoots, request.path, request.data, request.mode);
      return {};
    },
    GetMetrics: async () => {
      const stats = [];
      for (const info of containers.list()) {
        stats.push({ id: info.containerId, stats: await containers.stats(info.containerId) });
      }
      return { metrics: await system.metrics(stats, containers.timings) };
    },
    CreateSandbox: async (request) => {
      await system.setupSandbox(request.hostname, request.dns, request.storages);
      containers.sharedPidNs = request.sandboxPidns;
      containers.sandboxResolvConf = request.dns.length > 0;
      if (request.outputBufferBytes > 0) containers.outputCapacity = request.outputBufferBytes;
      return {};
    },
    DestroySandbox: async () => {
      await containers.removeAll();
      await context.outputPort?.quiesce(5_000);
      // Answer first; the exit comes a moment later so the response reaches the host.
      setTimeout(context.onDestroy, 300);
      return {};
    },
    CreateContainer: async (request) => ({
      pid: await containers.create(request.containerId, request.bundle, request.process, request.resources),
    }),
    StartContainer: async (request) => {
      await containers.start(request.containerId);
      return {};
    },
    RemoveContainer: async (request) => {
      await containers.remove(request.containerId, request.timeoutMs);
      return {};
    },
    PauseContainer: async (request) => {
      await containers.pause(request.containerId);
      return {};
    },
    ResumeContainer: async (request) => {
      await containers.resume(request.containerId);
      return {};
    },
    UpdateContainer: async (request) => {
      await containers.update(request.containerId, request.resources);
      return {};
    },
    StatsContainer: async (request) => ({ stats: await containers.stats(request.containerId) }),
    ListProcesses: async (request) => {
      if (request.format !== '' && request.format !== 'json' && request.format !== 'table') {
        throw new InvalidArgument('format', 'must be "json" or "table"');
      }
      const processes = await containers.processes(request.containerId);
      const table =
        request.format === 'table'
          ? ['PID\tUSER\tCOMMAND', ...processes.map((p) => `${p.pid}\t${p.user}\t${p.command}`)].join('\n')
          : '';
      return { processes, table };
    },
    ListContainers: async () => ({ containers: containers.list() }),
    ExecProcess: async (request) => ({
      pid: await containers.exec(request.containerId, request.execId, request.process),
    }),
    SignalProcess: async (request) => {
      await containers.signal(request.containerId, request.execId, request.signal, request.all);
      return {};
    },
    WaitProcess: async (request, signal) => {
      const status = await containers.wait(request.containerId, request.execId, signal);
      return { status: status ? exitOf(status) : null };
    },
    WriteStdin: async (request) => ({
      length: await containers.writeStdin(request.containerId, request.execId, request.data),
    }),
    CloseStdin: async (request) => {
      containers.closeStdin(request.containerId, request.execId);
      return {};
    },
    // async: an unknown process is a rejection (NOT_FOUND), not a throw inside grpc-js.
    ReadStdout: async (request, send, signal) =>
      readOutput(
        context.outputPort,
        containers.output(request.containerId, request.execId, 'stdout'),
        request,
        send,
        signal,
      ),
    ReadStderr: async (request, send, signal) =>
      readOutput(
        context.outputPort,
        containers.output(request.containerId, request.execId, 'stderr'),
        request,
        send,
        signal,
      ),
    OpenOutputPort: async (request) => {
      if (!context.outputPort) throw new InvalidState('output port', 'agent.output.0', 'absent', 'open');
      await context.outputPort.open(request.token);
      return {};
    },
    TtyWinResize: async (request) => {
      containers.ttyWinResize(request.containerId, request.execId, request.rows, request.cols);
      return {};
    },
    GetOOMEvent: async (_request, signal) => ({ containerId: (await events.nextOom(signal)) ?? '' }),
    StreamEvents: async (request, send, signal) => {
      // Sends one at a time in seq order; events that arrive while a send waits queue up behind it.
      const queue: NumberedEvent[] = [];
      let wake: (() => void) | undefined;
      const unsubscribe = events.follow(request.afterSeq, (event) => {
        queue.push(event);
        wake?.();
      });
      try {
        while (!signal.aborted) {
          const next = queue.shift();
          if (!next) {
            await new Promise<void>((resolve) => {
              wake = resolve;
              signal.addEventListener('abort', () => resolve(), { once: true });
            });
            wake = undefined;
            continue;
          }
          const { seq, event } = next;
          if (event.type === 'processExited') {
            await send({
              seq,
              bootId: events.bootId,
              processExited: {
                containerId: event.containerId,
                execId: event.execId,
                status: exitOf(event.status),
              },
            });
          } else {
            await send({ seq, bootId: events.bootId, oom: { containerId: event.containerId } });
          }
        }
      } finally {
        unsubscribe();
      }
    },
    ListInterfaces: async () => ({ interfaces: await system.listInterfaces() }),
    UpdateInterface: async (request) => ({ interface: await system.updateInterface(request.interface) }),
    ListRoutes: async () => ({ routes: await system.listRoutes() }),
    UpdateRoutes: async (request) => ({ routes: await system.updateRoutes(request.routes) }),
  } satisfies AgentHandlers;
}

/** gRPC status for any error: code from the typed class, kind and details in metadata for the host to rebuild it. */
export function toServiceError(err: unknown, step: string): ServerErrorResponse {
  const error = asSandboxdError(err, step);
  const metadata = new Metadata();
  metadata.set(ERROR_KIND_KEY, error.kind);
  try {
    metadata.set(ERROR_DETAILS_KEY, JSON.stringify(error.details));
  } catch {
    // Details that do not serialise are left out; the message still says what failed.
  }
  return Object.assign(new Error(error.message), {
    code: grpcStatusOf[error.code],
    details: error.message,
    metadata,
  });
}

/** Adapts the typed handlers to grpc-js's untyped implementation object. */
export function toImplementation(
  service: AgentServiceDefinition,
  handlers: AgentHandlers,
  logger: Logger,
): UntypedServiceImplementation {
  const implementation: UntypedServiceImplementation = {};
  for (const name of Object.keys(service) as (keyof AgentServiceDefinition)[]) {
    const method = service[name];
    if (method.responseStream) {
      const handler = handlers[name as StreamMethodName] as StreamHandler<StreamMethodName>;
      implementation[name] = (call: ServerWritableStream<RequestOf<StreamMethodName>, unknown>) => {
        const controller = new AbortController();
        call.on('cancelled', () => controller.abort());
        call.on('close', () => controller.abort());
        const send = async (message: unknown) => {
          if (controller.signal.aborted) return;
          if (!call.write(message)) {
            // once() with the signal removes its listener either way (a race with a second once() would leave one
            // abort listener behind per wait: a leak, and a warning printed on the slow serial console).
            await once(call, 'drain', { signal: controller.signal }).catch(() => {});
          }
        };
        handler(call.request, send as never, controller.signal).then(
          () => {
            if (!controller.signal.aborted) call.end();
          },
          (err: unknown) => {
            logger.debug({ err, rpc: name }, 'stream rpc failed');
            if (!controller.signal.aborted) call.destroy(toServiceError(err, name));
          },
        );
      };
    } else {
      const handler = handlers[name as UnaryMethodName] as UnaryHandler<UnaryMethodName>;
      implementation[name] = (
        call: ServerUnaryCall<RequestOf<UnaryMethodName>, unknown>,
        callback: sendUnaryData<unknown>,
      ) => {
        const controller = new AbortController();
        call.on('cancelled', () => controller.abort());
        handler(call.request, controller.signal).then(
          (response) => callback(null, response),
          (err: unknown) => {
            logger.debug({ err, rpc: name }, 'rpc failed');
            callback(toServiceError(err, name));
          },
        );
      };
    }
  }
  return implementation;
}
