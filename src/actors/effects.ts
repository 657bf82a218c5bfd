// The effects the machines name, bound to the two ports; each returns the outcome events it observed.

import { createSocket } from 'node:dgram';
import { mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Logger } from 'pino';
import type { Agent } from '../agent/index.js';
import {
  type BundleSummary,
  type GuestTranslation,
  type HookState,
  runHooks,
  translateForGuest,
  validateBundle,
} from '../bundle/index.js';
import { AgentError, AlreadyExists, HypervisorError, InvalidArgument, NotFound } from '../errors/index.js';
import type { DomainEventType, EventEnvelope, NewEvent } from '../events/index.js';
import {
  type GuestImagePaths,
  type Hypervisor,
  type PortForward,
  USER_NETWORK,
  type VmConfig,
  type VmUserNetwork,
} from '../hypervisor/index.js';
import type { ContainerEffect, ExecEffect, SandboxEffect } from '../machines/index.js';
import { attachNetns } from '../network/index.js';
import { shareBundle, unshareBundle } from './bundle-share.js';
import { withDeadline } from './deadline.js';
import type { ContainerActor, ExecActor, SandboxActor } from './entity.js';
import { stopContainersGracefully, stopGraceMs } from './graceful-stop.js';
import type { StateDirGuard } from './host-paths.js';
import { configureNetnsNetwork, netnsOf, unwire } from './netns-network.js';
import type { SandboxConfig } from './types.js';
import { unmountAllUnder } from './volumes.js';

/** A bundle as the effects use it: checked, and translated for the guest. */
interface ReadBundle {
  readonly summary: BundleSummary;
  readonly translation: GuestTranslation;
}

async function readBundle(path: string): Promise<ReadBundle> {
  const summary = await validateBundle(path, 'bundle');
  return { summary, translation: translateForGuest(summary.spec, summary.path) };
}

/** The state JSON a host hook reads: pid is the sandbox's QEMU, the host process that holds the container. */
function hookState(entity: ContainerActor, bundle: ReadBundle, status: HookState['status']): HookState {
  const pid = entity.sandbox.context.handle?.pid;
  return {
    ociVersion: bundle.summary.ociVersion,
    id: entity.id,
    status,
    ...(pid === undefined ? {} : { pid }),
    bundle: bundle.summary.path,
    annotations: bundle.translation.annotations,
  };
}

export interface SandboxDirs {
  /** `<stateDir>/sandboxes/<id>`: removed whole by delete. */
  readonly root: string;
  /** VmConfig.stateDir: sockets, pidfile, console log. */
  readonly vm: string;
  /** VmConfig.sharedDir: container bundles, seen by the guest under its share. */
  readonly shared: string;
}

export interface EffectContext {
  readonly hypervisor: Hypervisor;
  readonly agent: Agent;
  readonly logger: Logger;
  readonly dirs: (sandboxId: string) => SandboxDirs;
  readonly image: () => Promise<GuestImagePaths>;
  /** Keeps every host path bound into a sandbox clear of the state dir. */
  readonly guard: StateDirGuard;
  /**
   * Runs inside resumeVm, after the agent answers and before the sandbox counts as running, so no
   * command can create or start a container while recovery is still comparing the old ones with the guest.
   */
  readonly afterResume?: (sandbox: SandboxActor) => Promise<void>;
}

export interface EffectCall<A> {
  readonly ctx: EffectContext;
  readonly entity: A;
  /** The event that asked for the effect; its id is the idempotency key. */
  readonly cause: EventEnvelope;
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
}

export interface EffectDefinition<A> {
  /** The event appended when the effect throws or times out (none: failures are only logged). */
  readonly failure?: DomainEventType;
  readonly run: (call: EffectCall<A>) => Promise<NewEvent[]>;
}

/** Defaults sized for TCG guests on a loaded 2-core machine (GUEST.md: boots take 5–20 s). */
export const defaultVmShape = { vcpus: 1, maxVcpus: 4, memoryMiB: 512, maxMemoryMiB: 4096 } as const;

/** The VM size a sandbox config boots with, and how far hotplug may grow it. */
export interface VmShape {
  readonly vcpus: number;
  readonly maxVcpus: number;
  readonly memoryMiB: number;
  readonly maxMemoryMiB: number;
}

/** The VM network for `config`, defaults filled in; undefined (no NIC) unless network is 'user'. */
export function vmNetworkOf(config: Pick<SandboxConfig, 'network' | 'ports'>): VmUserNetwork | undefined {
  if (config.network !== 'user') return undefined;
  return {
    mode: 'user',
    ports: (config.ports ?? []).map((p) => ({
      protocol: p.protocol ?? 'tcp',
      hostAddress: p.hostAddress ?? '127.0.0.1',
      hostPort: p.hostPort,
      guestPort: p.guestPort,
    })),
  };
}

/** Whether this host can bind `port` right now (what QEMU's hostfwd will do); the errno when not. */
function bindProblem(port: PortForward): Promise<string | undefined> {
  return new Promise((resolve) => {
    const fail = (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message);
    if (port.protocol === 'udp') {
      const probe = createSocket('udp4');
      probe.once('error', fail);
      probe.bind({ port: port.hostPort, address: port.hostAddress, exclusive: true }, () =>
        probe.close(() => resolve(undefined)),
      );
      return;
    }
    const probe = createServer();
    probe.once('error', fail);
    probe.listen({ port: port.hostPort, host: port.hostAddress, exclusive: true }, () =>
      probe.close(() => resolve(undefined)),
    );
  });
}

/**
 * Fails naming the port when a host port to forward cannot be bound: QEMU would exit with only "could not set
 * up host forwarding rule". `asArgument`: as InvalidArgument naming config.ports[i].hostPort (a check before
 * anything is recorded); otherwise as the launch's HypervisorError (the port was taken since).
 */
export async function checkHostPortsFree(network: VmUserNetwork, asArgument = false): Promise<void> {
  for (const [i, port] of network.ports.entries()) {
    const problem = await bindProblem(port);
    if (problem === undefined) continue;
    const what = `host port ${port.hostAddress}:${port.hostPort}/${port.protocol} cannot be forwarded: ${problem}`;
    if (asArgument) throw new InvalidArgument(`config.ports.${i}.hostPort`, what);
    throw new HypervisorError('forward ports', what, { hostPort: port.hostPort });
  }
}

/** Gives the guest's NIC the user network's address and default route (idempotent: a retried start redoes it). */
async function configureUserNetwork(agent: Agent, sandboxId: string): Promise<void> {
  await agent.updateInterface(sandboxId, {
    name: USER_NETWORK.interface,
    addresses: [USER_NETWORK.guestAddress],
    up: true,
  });
  await agent.updateRoutes(sandboxId, [
    { dest: 'default', gateway: USER_NETWORK.gateway, device: USER_NETWORK.interface },
  ]);
}

/** What launchVm gives QEMU for `config`: its sizes, defaults filled in, limits never below the boot size. */
export function vmShapeOf(config: {
  readonly vcpus?: number;
  readonly maxVcpus?: number;
  readonly memoryMiB?: number;
  readonly maxMemoryMiB?: number;
}): VmShape {
  const vcpus = config.vcpus ?? defaultVmShape.vcpus;
  const memoryMiB = config.memoryMiB ?? defaultVmShape.memoryMiB;
  return {
    vcpus,
    maxVcpus: Math.max(vcpus, config.maxVcpus ?? defaultVmShape.maxVcpus),
    memoryMiB,
    maxMemoryMiB: Math.max(memoryMiB, config.maxMemoryMiB ?? defaultVmShape.maxMemoryMiB),
  };
}

/** How long a stop waits for the guest to end its containers before QEMU is asked to power down. */
const GUEST_GOODBYE_MS = 5_000;

const quietly = async (what: Promise<unknown>, logger: Logger, step: string) => {
  try {
    await what;
  } catch (err) {
    logger.debug({ err, step }, 'best-effort step failed');
  }
};

function handleOf(sandbox: SandboxActor, step: string) {
  const handle = sandbox.context.handle;
  if (!handle) throw new HypervisorError(step, 'the sandbox has no VM', { sandboxId: sandbox.id });
  return handle;
}

// Keyed by the machine's effect names: one the machine names but nobody binds does not compile.
export const sandboxEffectDefinitions: Readonly<Record<SandboxEffect, EffectDefinition<SandboxActor>>> = {
  launchVm: {
    failure: 'SandboxStartFailed',
    run: async ({ ctx, entity, signal, cause }) => {
      const dirs = ctx.dirs(entity.id);
      // A restart after a stop: clear what the previous VM left in its state dir (sockets, pidfile).
      if (cause.version > 2) await ctx.hypervisor.destroy(entity.id, dirs.vm);
      await mkdir(dirs.shared, { recursive: true });
      const network = vmNetworkOf(entity.context.config);
      if (network) await checkHostPortsFree(network);
      const image = await ctx.image();
      const netns = netnsOf(entity.context.config);
      // Taps before QEMU: it opens them by name inside the namespace. What a retry finds there is kept.
      const wiring = netns ? await attachNetns(netns, entity.id, ctx.logger) : undefined;
      const vm: VmConfig = {
        sandboxId: entity.id,
        stateDir: dirs.vm,
        sharedDir: dirs.shared,
        image,
        ...vmShapeOf(entity.context.config),
        ...(network ? { network } : {}),
        ...(wiring
          ? {
              network: {
                mode: 'netns',
                path: wiring.path,
                nics: wiring.links.map((l) => ({ tap: l.tap, mac: l.mac })),
              },
            }
          : {}),
      };
      try {
        const handle = await ctx.hypervisor.launch(vm, signal);
        return [
          ...(wiring ? [{ type: 'SandboxNetworkAttached' as const, data: { wiring } }] : []),
          { type: 'VmLaunched', data: { handle } },
        ];
      } catch (err) {
        await quietly(unwire(ctx.logger, entity), ctx.logger, 'netns detach');
        throw err;
      }
    },
  },
  connectAgent: {
    failure: 'SandboxStartFailed',
    run: async ({ ctx, entity, signal, timeoutMs }) => {
      const handle = handleOf(entity, 'connectAgent');
      await ctx.agent.connect(entity.id, handle.agentSocket, { deadlineMs: timeoutMs, signal });
      const { version } = await ctx.agent.check(entity.id);
      return [{ type: 'AgentConnected', data: { agentVersion: version } }];
    },
  },
  initGuest: {
    failure: 'SandboxStartFailed',
    run: async ({ ctx, entity }) => {
      const { hostname } = entity.context.config;
      const network = vmNetworkOf(entity.context.config);
      // On the user network QEMU answers DNS itself (forwarding to the host's resolvers).
      const dns = entity.context.config.dns ?? (network ? [USER_NETWORK.dns] : undefined);
      try {
        await ctx.agent.createSandbox(entity.id, {
          ...(hostname === undefined ? {} : { hostname }),
          ...(dns === undefined ? {} : { dns }),
          sandboxPidNs: false,
        });
      } catch (err) {
        // A retried init after a restart finds the guest already initialised: that is the outcome we wanted.
        if (!(err instanceof AlreadyExists)) throw err;
      }
      if (network) await configureUserNetwork(ctx.agent, entity.id);
      if (entity.context.netns) await configureNetnsNetwork(ctx.agent, entity.id, entity.context.netns);
      return [{ type: 'SandboxStarted', data: {} }];
    },
  },
  releaseVm: {
    run: async ({ ctx, entity }) => {
      await quietly(ctx.agent.disconnect(entity.id), ctx.logger, 'agent disconnect');
      await ctx.hypervisor.destroy(entity.id, ctx.dirs(entity.id).vm);
      await quietly(unwire(ctx.logger, entity), ctx.logger, 'netns detach');
      return [];
    },
  },
  pauseVm: {
    failure: 'SandboxPauseFailed',
    run: async ({ ctx, entity }) => {
      await ctx.hypervisor.pause(entity.id);
      return [{ type: 'SandboxPaused', data: {} }];
    },
  },
  resumeVm: {
    failure: 'SandboxResumeFailed',
    run: async ({ ctx, entity, signal, timeoutMs }) => {
      await ctx.hypervisor.resume(entity.id);
      // After a restart that found the VM paused, the agent was never dialled: it can answer now.
      const handle = handleOf(entity, 'resumeVm');
      await ctx.agent.connect(entity.id, handle.agentSocket, { deadlineMs: timeoutMs, signal });
      await ctx.afterResume?.(entity);
      return [{ type: 'SandboxResumed', data: {} }];
    },
  },
  stopVm: {
    failure: 'SandboxStopFailed',
    run: async ({ ctx, entity, cause, signal, timeoutMs: deadlineMs }) => {
      const timeoutMs = (cause.data as { timeoutMs?: number }).timeoutMs;
      // Let the guest end its containers cleanly, unless it is frozen (paused) and cannot answer.
      const status = await ctx.hypervisor.status(entity.id).catch(() => 'gone');
      if (entity.context.agentVersion !== undefined && status === 'running') {
        // As docker stop: SIGTERM, the grace period (timeoutMs), SIGKILL; the exits are recorded as they come.
        const graceMs = stopGraceMs(timeoutMs, deadlineMs);
        await stopContainersGracefully(ctx, entity, graceMs, deadlineMs, signal);
        await quietly(
          withDeadline(ctx.agent.destroySandbox(entity.id), GUEST_GOODBYE_MS, 'agent destroySandbox'),
          ctx.logger,
          'agent destroySandbox',
        );
      }
      await quietly(ctx.agent.disconnect(entity.id), ctx.logger, 'agent disconnect');
      await ctx.hypervisor.stop(entity.id, timeoutMs === undefined ? {} : { timeoutMs });
      // A stopped sandbox holds nothing in its namespace; a start wires it again.
      await quietly(unwire(ctx.logger, entity), ctx.logger, 'netns detach');
      return [{ type: 'SandboxStopped', data: {} }];
    },
  },
  destroyVm: {
    failure: 'SandboxDeleteFailed',
    run: async ({ ctx, entity }) => {
      const dirs = ctx.dirs(entity.id);
      // A container effect still in flight (a create binding its rootfs) would mount below the share after
      // the unmounts below: abort them and let them end first (bounded: a wedged one delays, never blocks).
      const children = [...entity.containers.values()];
      for (const c of children) c.abortInflight();
      await Promise.race([
        Promise.all(children.map((c) => c.quiesced())),
        new Promise((r) => setTimeout(r, childQuiesceMs).unref()),
      ]);
      await quietly(ctx.agent.disconnect(entity.id), ctx.logger, 'agent disconnect');
      await ctx.hypervisor.destroy(entity.id, dirs.vm);
      await unwire(ctx.logger, entity);
      // Volumes of containers still there are bound below the share: unmount them, or remove nothing.
      await unmountAllUnder(dirs.root);
      await rm(dirs.root, { recursive: true, force: true });
      return [{ type: 'SandboxDeleted', data: {} }];
    },
  },
};

/**
 * Whether the sandbox's agent can be asked anything now (a paused guest is frozen and cannot answer).
 * While resuming, only recovery's check of the containers asks, after the guest runs and the agent answered.
 */
function agentReachable(sandbox: SandboxActor): boolean {
  return sandbox.state === 'running' || sandbox.state === 'resuming';
}

/** How long a sandbox's delete waits for its containers' effects in flight to end. */
const childQuiesceMs = 10_000;

// Keyed by the machine's effect names: one the machine names but nobody binds does not compile.
export const containerEffectDefinitions: Readonly<Record<ContainerEffect, EffectDefinition<ContainerActor>>> =
  {
    createContainer: {
      failure: 'ContainerCreateFailed',
      run: async ({ ctx, entity }) => {
        const c = entity.context;
        const sandboxId = entity.sandbox.id;
        // The guest sees only its share: the bundle is put at <shared>/<containerId>/ by bind mounts (nothing is
        // copied), with a config.json translated for the VM. Read again here, so a retry after a crash acts on
        // what the bundle says now, as the first try did.
        const shared = ctx.dirs(sandboxId).shared;
        const bundle = await readBundle(c.bundle);
        try {
          await shareBundle(shared, entity.id, bundle.translation, c.mounts ?? [], ctx.guard);
          const { pid } = await ctx.agent.createContainer(sandboxId, {
            containerId: entity.id,
            bundle: entity.id,
            ...(c.process ? { process: c.process } : {}),
            ...(c.resources ? { resources: c.resources } : {}),
          });
          // The guest's container waits at its createRuntime point (the start gate): the host's prestart and
          // createRuntime hooks run now, as the runtime spec places them. One failing fails the create.
          try {
            const state = hookState(entity, bundle, 'created');
            await runHooks('prestart', bundle.translation.hostHooks.prestart, state, ctx);
            await runHooks('createRuntime', bundle.translation.hostHooks.createRuntime, state, ctx);
          } catch (err) {
            await quietly(
              ctx.agent.removeContainer(sandboxId, entity.id, 10_000),
              ctx.logger,
              'remove after hook',
            );
            throw err;
          }
          return [{ type: 'ContainerCreated', data: { pid } }];
        } catch (err) {
          // A failed create holds no host path: the container never ran, nothing needs them.
          await quietly(unshareBundle(shared, entity.id), ctx.logger, 'unshare bundle');
          throw err;
        }
      },
    },
    startContainer: {
      failure: 'ContainerStartFailed',
      run: async ({ ctx, entity }) => {
        await ctx.agent.startContainer(entity.sandbox.id, entity.id);
        const bundle = await readBundle(entity.context.bundle).catch(() => undefined);
        if (bundle) {
          const state = hookState(entity, bundle, 'running');
          await runHooks('poststart', bundle.translation.hostHooks.poststart, state, ctx);
        }
        return [{ type: 'ContainerStarted', data: {} }];
      },
    },
    pauseContainer: {
      failure: 'ContainerPauseFailed',
      run: async ({ ctx, entity }) => {
        await ctx.agent.pauseContainer(entity.sandbox.id, entity.id);
        return [{ type: 'ContainerPaused', data: {} }];
      },
    },
    resumeContainer: {
      failure: 'ContainerResumeFailed',
      run: async ({ ctx, entity }) => {
        await ctx.agent.resumeContainer(entity.sandbox.id, entity.id);
        return [{ type: 'ContainerResumed', data: {} }];
      },
    },
    removeContainer: {
      failure: 'ContainerDeleteFailed',
      run: async ({ ctx, entity, cause, timeoutMs }) => {
        const sandboxId = entity.sandbox.id;
        if (agentReachable(entity.sandbox)) {
          if ((cause.data as { force?: boolean }).force) {
            await quietly(
              ctx.agent.signalProcess(sandboxId, entity.id, '', 'SIGKILL', true),
              ctx.logger,
              'kill before delete',
            );
          }
          try {
            await ctx.agent.removeContainer(sandboxId, entity.id, timeoutMs);
          } catch (err) {
            if (!(err instanceof NotFound)) throw err;
          }
        }
        // Unmounted first: a remove must never reach through a bind into the host's files.
        await unshareBundle(ctx.dirs(sandboxId).shared, entity.id);
        const bundle = await readBundle(entity.context.bundle).catch(() => undefined);
        if (bundle) {
          const state = hookState(entity, bundle, 'stopped');
          await runHooks('poststop', bundle.translation.hostHooks.poststop, state, ctx);
        }
        return [{ type: 'ContainerDeleted', data: {} }];
      },
    },
  };

// Keyed by the machine's effect names: one the machine names but nobody binds does not compile.
export const execEffectDefinitions: Readonly<Record<ExecEffect, EffectDefinition<ExecActor>>> = {
  startProcess: {
    failure: 'ExecStartFailed',
    run: async ({ ctx, entity }) => {
      const c = entity.container;
      if (!agentReachable(c.sandbox)) {
        throw new AgentError('execProcess', `sandbox ${c.sandbox.id} is ${c.sandbox.state}`);
      }
      const { pid } = await ctx.agent.execProcess(c.sandbox.id, {
        containerId: c.id,
        execId: entity.id,
        process: entity.context.process,
      });
      return [{ type: 'ExecStarted', data: { pid } }];
    },
  },
};
