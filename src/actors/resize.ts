// Growing a running sandbox's VM (sandbox.update): the size rules, hotplug, onlining in the guest, and the check after a restart.
import type { Logger } from 'pino';
import type { Agent } from '../agent/index.js';
import { asSandboxdError, InvalidArgument, type SandboxdError, Timeout } from '../errors/index.js';
import type { Hypervisor, VmSize } from '../hypervisor/index.js';
import { sleep } from '../timing/index.js';
import { type EffectDefinition, PartialEffect } from './effects.js';
import type { SandboxActor } from './entity.js';
import { type VmShape, vmShapeOf } from './vm-config.js';

/**
 * The guest's memory block (x86_64 guests under 64 GiB): the unit the kernel onlines. Growth in other
 * amounts would leave a partial block the guest never uses.
 */
export const MEMORY_BLOCK_MIB = 128;

const MiB = 1024 * 1024;

export interface ResizeRequest {
  readonly vcpus?: number;
  readonly memoryMiB?: number;
}

/** The size the VM has now: the last SandboxResized, else what the config booted it with. */
export function currentSize(shape: VmShape, resized: VmSize | undefined): VmSize {
  return resized ?? { vcpus: shape.vcpus, memoryMiB: shape.memoryMiB };
}

export const sameSize = (a: VmSize, b: VmSize): boolean => a.vcpus === b.vcpus && a.memoryMiB === b.memoryMiB;

/**
 * The size `request` asks for, checked against the sandbox's limits and the guest's rules. Throws
 * InvalidArgument naming the field (nothing was done). Equal to `now` means there is nothing to do.
 */
export function planResize(shape: VmShape, now: VmSize, request: ResizeRequest): VmSize {
  if (request.vcpus === undefined && request.memoryMiB === undefined) {
    throw new InvalidArgument('vcpus', 'give vcpus, memoryMiB or both');
  }
  const vcpus = request.vcpus ?? now.vcpus;
  const memoryMiB = request.memoryMiB ?? now.memoryMiB;
  if (!Number.isInteger(vcpus) || vcpus < 1) throw new InvalidArgument('vcpus', 'must be an integer ≥ 1');
  if (!Number.isInteger(memoryMiB) || memoryMiB < 1)
    throw new InvalidArgument('memoryMiB', 'must be an integer ≥ 1');
  if (vcpus > shape.maxVcpus) {
    throw new InvalidArgument('vcpus', `at most ${shape.maxVcpus} (maxVcpus of this sandbox)`, {
      max: shape.maxVcpus,
    });
  }
  if (memoryMiB > shape.maxMemoryMiB) {
    throw new InvalidArgument('memoryMiB', `at most ${shape.maxMemoryMiB} (maxMemoryMiB of this sandbox)`, {
      max: shape.maxMemoryMiB,
    });
  }
  if (vcpus < now.vcpus) {
    throw new InvalidArgument('vcpus', `cannot shrink: unplug is not supported (now ${now.vcpus})`, {
      now: now.vcpus,
    });
  }
  if (memoryMiB < now.memoryMiB) {
    throw new InvalidArgument('memoryMiB', `cannot shrink: unplug is not supported (now ${now.memoryMiB})`, {
      now: now.memoryMiB,
    });
  }
  if ((memoryMiB - now.memoryMiB) % MEMORY_BLOCK_MIB !== 0) {
    throw new InvalidArgument(
      'memoryMiB',
      `must grow by a multiple of ${MEMORY_BLOCK_MIB} MiB, the guest's memory block (now ${now.memoryMiB})`,
      { now: now.memoryMiB },
    );
  }
  return { vcpus, memoryMiB };
}

export interface GrowPorts {
  readonly hypervisor: Hypervisor;
  readonly agent: Agent;
  readonly logger: Logger;
}

export interface Grown {
  /** What the VM has now: `to` when everything went, less when a step failed half way. */
  readonly reached: VmSize;
  /** Why it stopped short (or why the guest did not take it all); the VM may still have grown. */
  readonly error?: SandboxdError;
}

/**
 * Hotplugs `from` → `to` (memory first: a full set of DIMM slots refuses before anything changed), then
 * has the agent online what arrived. New CPUs and memory blocks reach the guest's sysfs a moment after
 * QEMU's device_add returns (ACPI), so onlining is asked again until the guest shows them, within `ms`.
 * Never throws: the caller records `reached` whatever happened, so the log tells the truth.
 */
export async function growVm(
  ports: GrowPorts,
  sandboxId: string,
  from: VmSize,
  to: VmSize,
  ms: number,
  /** Memory plugged before (a retry after a crash) that the guest may not have onlined yet. */
  pluggedBefore = false,
): Promise<Grown> {
  const { hypervisor, agent, logger } = ports;
  let reached = from;
  try {
    const growMiB = to.memoryMiB - from.memoryMiB;
    const baseline = growMiB > 0 ? (await agent.getGuestDetails(sandboxId)).memTotalBytes : 0;
    if (growMiB > 0) {
      try {
        await hypervisor.hotplugMemory(sandboxId, growMiB);
      } catch (err) {
        // The port names its own parameter; the caller asked in terms of the sandbox's total.
        if (err instanceof InvalidArgument && err.field === 'sizeMiB') {
          throw new InvalidArgument('memoryMiB', err.message.replace(/^sizeMiB: /, ''), { sandboxId });
        }
        throw err;
      }
      reached = { ...reached, memoryMiB: to.memoryMiB };
    }
    if (to.vcpus > from.vcpus) {
      reached = { ...reached, vcpus: await hypervisor.hotplugCpus(sandboxId, to.vcpus) };
    }
    const deadline = Date.now() + ms;
    // Half a block short still means a block is missing: MemTotal grows by whole blocks.
    const wantMemBytes = baseline + growMiB * MiB - (MEMORY_BLOCK_MIB / 2) * MiB;
    for (;;) {
      await agent.onlineCpuMem(sandboxId, { cpus: reached.vcpus, memory: growMiB > 0 || pluggedBefore });
      const guest = await agent.getGuestDetails(sandboxId);
      if (guest.cpus >= reached.vcpus && (growMiB <= 0 || guest.memTotalBytes >= wantMemBytes)) {
        logger.info(
          { sandboxId, vcpus: guest.cpus, memTotalBytes: guest.memTotalBytes },
          'sandbox grown, the guest uses it',
        );
        return { reached };
      }
      if (Date.now() > deadline) {
        throw new Timeout('onlineCpuMem', ms, {
          sandboxId,
          guestCpus: guest.cpus,
          guestMemTotalBytes: guest.memTotalBytes,
        });
      }
      await sleep(200);
    }
  } catch (err) {
    return { reached, error: asSandboxdError(err, 'resize') };
  }
}

/** Onlining must give up before the effect's own deadline, or what QEMU took would go unrecorded. */
const onlineWithin = (timeoutMs: number) => Math.max(1_000, timeoutMs - 5_000);

/**
 * resizeVm, the effect of SandboxResizeRequested: grows from what QEMU has — after a crash it may already hold
 * part or all of the request, so a retry never plugs twice — to the asked totals. Its outcome is SandboxResized
 * with what the VM has; when a step failed, that (if anything was taken) and then SandboxResizeFailed.
 */
export const resizeVmEffect: EffectDefinition<SandboxActor> = {
  failure: 'SandboxResizeFailed',
  run: async ({ ctx, entity, cause, timeoutMs }) => {
    const to = cause.data as VmSize;
    const logged = currentSize(vmShapeOf(entity.context.config), entity.context.size);
    const from = ctx.hypervisor.size ? await ctx.hypervisor.size(entity.id) : logged;
    const plugged = from.memoryMiB > logged.memoryMiB;
    const { reached, error } = await growVm(ctx, entity.id, from, to, onlineWithin(timeoutMs), plugged);
    const resized = { type: 'SandboxResized' as const, data: reached };
    if (error) throw new PartialEffect(sameSize(reached, logged) ? [] : [resized], error);
    return [resized];
  },
};
