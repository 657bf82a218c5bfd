// The sandbox effects the machine names (launch, connect, init, pause, resume, stop, release, destroy).

import { mkdir, rm } from 'node:fs/promises';
import type { NetInterface, NetRoute } from '../agent/index.js';
import { joinCgroups } from '../cgroups/index.js';
import { AlreadyExists, HypervisorError } from '../errors/index.js';
import type { SandboxEventData } from '../events/index.js';
import type { VmConfig } from '../hypervisor/index.js';
import type { SandboxEffect } from '../machines/index.js';
import { attachNetns, resolvConfLines } from '../network/index.js';
import { sleep, withDeadline } from '../timing/index.js';
import { childQuiesceMs, type EffectContext, type EffectDefinition, handleOf, quietly } from './effects.js';
import type { SandboxActor } from './entity.js';
import { stopContainersGracefully, stopGraceMs } from './graceful-stop.js';
import { configureNetnsNetwork, guestDnsOf, inNetnsTurn, netnsOf, unwire } from './netns-network.js';
import { refreshNetworkEffect } from './netns-refresh.js';
import { resizeVmEffect } from './resize.js';
import { refreshIdentity, restoreFromTemplate, SHARE_STORAGE } from './restore.js';
import { checkHostPortsFree, configureUserNetwork, vmNetworkOf, vmShapeOf } from './vm-config.js';
import { unmountAllUnder } from './volumes.js';

/** How long a stop waits for the guest to end its containers before QEMU is asked to power down. */
const GUEST_GOODBYE_MS = 5_000;

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
      const wiring = netns
        ? await inNetnsTurn(entity, () => attachNetns(netns, entity.id, ctx.logger))
        : undefined;
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
      // Template or cold was decided when the start was asked (the intent); a netns VM is never a clone.
      const template = (cause.data as SandboxEventData['SandboxStartRequested']).template;
      try {
        const restored =
          template && !wiring ? await restoreFromTemplate(ctx, vm, template, signal) : undefined;
        const handle = restored?.handle ?? (await ctx.hypervisor.launch(vm, signal));
        await joinHostCgroup(ctx, entity, handle.pid, dirs.vm);
        return [
          ...(wiring ? [{ type: 'SandboxNetworkAttached' as const, data: { wiring } }] : []),
          ...(restored ? [restored.event] : []),
          { type: 'VmLaunched', data: { handle } },
        ];
      } catch (err) {
        // Undoes this attempt's own wiring, which was never recorded (its SandboxNetworkAttached is not returned).
        await unwire(ctx.logger, entity, 'start failed');
        throw err;
      }
    },
  },
  connectAgent: {
    failure: 'SandboxStartFailed',
    run: async ({ ctx, entity, signal, timeoutMs }) => {
      const handle = handleOf(entity, 'connectAgent');
      await ctx.agent.connect(entity.id, handle.agentSocket, {
        deadlineMs: timeoutMs,
        signal,
        outputSocket: handle.outputSocket,
      });
      const { version } = await ctx.agent.check(entity.id);
      return [{ type: 'AgentConnected', data: { agentVersion: version } }];
    },
  },
  initGuest: {
    failure: 'SandboxStartFailed',
    run: async ({ ctx, entity }) => {
      const { hostname } = entity.context.config;
      const network = vmNetworkOf(entity.context.config);
      const resolver = guestDnsOf(entity.context.config, entity.context.netns);
      const dns = resolver ? resolvConfLines(resolver) : undefined;
      // A clone's identity is made its own before CreateSandbox, so nothing of the sandbox runs with the template's.
      const clone = entity.context.restored !== undefined;
      const steps = clone ? await refreshIdentity(ctx, entity.id) : [];
      const created = performance.now();
      try {
        await ctx.agent.createSandbox(entity.id, {
          ...(hostname === undefined ? {} : { hostname }),
          ...(dns === undefined ? {} : { dns }),
          sandboxPidNs: false,
          ...(clone ? { storages: [SHARE_STORAGE] } : {}),
        });
      } catch (err) {
        // A retried init after a restart finds the guest already initialised: that is the outcome we wanted.
        if (!(err instanceof AlreadyExists)) throw err;
      }
      if (clone && hostname !== undefined) {
        steps.push({ step: 'hostname', ms: Math.round((performance.now() - created) * 10) / 10 });
      }
      if (network) await configureUserNetwork(ctx.agent, entity.id);
      if (entity.context.netns) await configureNetnsNetwork(ctx.agent, entity.id, entity.context.netns);
      return [
        ...(clone ? [{ type: 'SandboxIdentityRefreshed' as const, data: { steps } }] : []),
        { type: 'SandboxStarted', data: {} },
      ];
    },
  },
  releaseVm: {
    run: async ({ ctx, entity }) => {
      await quietly(ctx.agent.disconnect(entity.id), ctx.logger, 'agent disconnect');
      await ctx.hypervisor.destroy(entity.id, ctx.dirs(entity.id).vm);
      return unwire(ctx.logger, entity, 'sandbox failed');
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
      await ctx.agent.connect(entity.id, handle.agentSocket, {
        deadlineMs: timeoutMs,
        signal,
        outputSocket: handle.outputSocket,
      });
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
      return [...(await unwire(ctx.logger, entity, 'sandbox stopped')), { type: 'SandboxStopped', data: {} }];
    },
  },
  /** Idempotent (an address or route set twice is set once): recovery may run it again. */
  updateGuestNetwork: {
    failure: 'GuestNetworkUpdateFailed',
    run: async ({ ctx, entity, cause }) => {
      const change = cause.data as { interface?: NetInterface; routes?: NetRoute[] };
      if (change.interface) await ctx.agent.updateInterface(entity.id, change.interface);
      if (change.routes) await ctx.agent.updateRoutes(entity.id, change.routes);
      return [{ type: 'GuestNetworkUpdated', data: change }];
    },
  },
  resizeVm: resizeVmEffect,
  refreshNetwork: refreshNetworkEffect,
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
      const released = await unwire(ctx.logger, entity, 'sandbox deleted', true);
      await removeSandboxDir(ctx, entity.id, dirs.root);
      return [...released, { type: 'SandboxDeleted', data: {} }];
    },
  },
};

/**
 * Unmounts what is bound below the sandbox's dir (volumes and rootfs of containers still there), then removes it.
 * A container effect that outlived the quiesce wait may still be adding an entry while rm walks the tree
 * (ENOTEMPTY): unmount and remove again, a few times, before giving up.
 */
async function removeSandboxDir(ctx: EffectContext, sandboxId: string, root: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    await unmountAllUnder(root);
    try {
      await rm(root, { recursive: true, force: true });
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EBUSY') || attempt >= 5) throw err;
      ctx.logger.warn(
        { sandboxId, dir: root, code, attempt },
        'sandbox dir changed while being removed; again',
      );
      await sleep(200);
    }
  }
}

/**
 * QEMU joins the host cgroup directories of config.hostCgroup (sandboxd-runc's linux.cgroupsPath), so that whoever
 * accounts for that cgroup sees the VM. A VM that cannot join is not kept: the launch fails and QEMU goes.
 */
async function joinHostCgroup(ctx: EffectContext, entity: SandboxActor, pid: number, vmDir: string) {
  const dirs = entity.context.config.hostCgroup;
  if (!dirs || dirs.length === 0) return;
  try {
    await joinCgroups(dirs, pid);
    ctx.logger.info({ sandboxId: entity.id, pid, hostCgroup: dirs }, 'QEMU joined its host cgroup');
  } catch (err) {
    await quietly(ctx.hypervisor.destroy(entity.id, vmDir), ctx.logger, 'destroy after cgroup join');
    throw new HypervisorError(
      'cgroup join',
      `QEMU (pid ${pid}) could not join ${dirs.join(', ')}: ${(err as Error).message}`,
    );
  }
}
