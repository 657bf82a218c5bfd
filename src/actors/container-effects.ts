// The container and exec effects the machines name (create, start, pause, resume, remove; start a process).

import type { ContainerResources } from '../agent/index.js';
import {
  type BundleSummary,
  type GuestTranslation,
  type HookState,
  runHooks,
  translateForGuest,
  validateBundle,
} from '../bundle/index.js';
import { AgentError, NotFound } from '../errors/index.js';
import type { NewEvent } from '../events/index.js';
import type { ContainerEffect, ExecEffect } from '../machines/index.js';
import { withDeadline } from '../timing/index.js';
import { shareBundle, unshareBundle } from './bundle-share.js';
import { checkCpuset, pinSandbox } from './cpuset.js';
import { agentReachable, type EffectDefinition, quietly } from './effects.js';
import type { ContainerActor, ExecActor } from './entity.js';

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

/** container.update's resources: what the guest's cgroup takes, and the cpuset the host pins the VM to. */
type HostResources = ContainerResources & { readonly cpusetCpus?: string; readonly cpusetMems?: string };

/** How long a forced delete waits for the init it killed to be reported ended (then it deletes without). */
const KILLED_EXIT_WAIT_MS = 5_000;

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
        const cpus = c.resources?.cpusetCpus ?? bundle.translation.hostCpuset?.cpus;
        await checkCpuset(
          {
            list: cpus,
            field: c.resources?.cpusetCpus
              ? 'resources.cpusetCpus'
              : 'bundle.config.json.linux.resources.cpu.cpus',
          },
          {
            list: c.resources?.cpusetMems ?? bundle.translation.hostCpuset?.mems,
            field: c.resources?.cpusetMems
              ? 'resources.cpusetMems'
              : 'bundle.config.json.linux.resources.cpu.mems',
          },
        );
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
          // Pinned once the guest holds the container: a create that failed before leaves the VM as it was.
          const pinned = cpus ? await pinSandbox(ctx, entity, cpus) : undefined;
          return [
            {
              type: 'ContainerCreated',
              data: {
                pid,
                ...(cpus ? { cpusetCpus: cpus } : {}),
                ...(pinned ? { vcpusPinnedTo: pinned } : {}),
              },
            },
          ];
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
    /** Idempotent: setting the same resources twice leaves the cgroup as once (recovery may run it again). */
    updateContainer: {
      failure: 'ContainerUpdateFailed',
      run: async ({ ctx, entity, cause }) => {
        const { resources } = cause.data as { resources: HostResources };
        const { cpusetCpus: cpus, cpusetMems: mems, ...guest } = resources;
        await checkCpuset(
          { list: cpus, field: 'resources.cpusetCpus' },
          { list: mems, field: 'resources.cpusetMems' },
        );
        // The guest first: an update it refuses leaves the VM's pinning as it was.
        if (Object.keys(guest).length > 0)
          await ctx.agent.updateContainer(entity.sandbox.id, entity.id, guest);
        const pinned = cpus ? await pinSandbox(ctx, entity, cpus) : undefined;
        return [
          { type: 'ContainerUpdated', data: { resources, ...(pinned ? { vcpusPinnedTo: pinned } : {}) } },
        ];
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
        const outcome: NewEvent[] = [];
        if (agentReachable(entity.sandbox)) {
          if ((cause.data as { force?: boolean }).force) {
            // An init that ran and had not ended: killed here, and its end recorded before the delete.
            const live = entity.context.startedAt !== undefined && entity.context.exit === undefined;
            await quietly(
              ctx.agent.signalProcess(sandboxId, entity.id, '', 'SIGKILL', true),
              ctx.logger,
              'kill before delete',
            );
            if (live) {
              const exit = await withDeadline(
                ctx.agent.waitProcess(sandboxId, entity.id, ''),
                KILLED_EXIT_WAIT_MS,
                'wait after kill',
              ).catch((err) =>
                ctx.logger.debug({ err, sandboxId, containerId: entity.id }, 'no exit after kill'),
              );
              if (exit) {
                const { exitCode, signal, oomKilled } = exit;
                const data = {
                  exitCode,
                  ...(signal === undefined ? {} : { signal }),
                  oomKilled: oomKilled === true,
                };
                outcome.push({ type: 'ContainerExited', data });
              }
            }
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
        // Its cpuset leaves the sandbox's union: the VM is pinned to what the others ask (all CPUs when none).
        const pinned =
          entity.context.cpusetCpus && agentReachable(entity.sandbox)
            ? await pinSandbox(ctx, entity, undefined).catch((err) => {
                ctx.logger.warn({ err, sandboxId, containerId: entity.id }, 'unpinning the VM failed');
                return undefined;
              })
            : undefined;
        return [...outcome, { type: 'ContainerDeleted', data: pinned ? { vcpusPinnedTo: pinned } : {} }];
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
