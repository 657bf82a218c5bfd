// A container's cpuset on the host: its CPU ids are the host's, so the sandbox's VM is pinned to the union of
// its containers' cpusets (Kata's sandbox-level cpuset) and the guest's cgroups never see host ids. A container
// without a cpuset does not widen the union; with none left, the VM may run on every online CPU again.
import { parseCpuList, unionCpuLists } from '../bundle/index.js';
import { InvalidArgument } from '../errors/index.js';
import { hostOnline } from '../hypervisor/index.js';
import type { EffectContext } from './effects.js';
import type { ContainerActor } from './entity.js';

/** The host's online ids of `what`, read once: their list as the kernel gives it and the ids `list` lacks. */
async function againstOnline(
  what: 'cpu' | 'node',
  list: string,
): Promise<{ online: string; missing: number[] }> {
  const online = await hostOnline(what);
  const ids = new Set(parseCpuList(online, `/sys/devices/system/${what}/online`));
  return { online, missing: parseCpuList(list, what).filter((id) => !ids.has(id)) };
}

/**
 * Refuses, before anything changes, a cpuset the host cannot honour: CPUs that are not online, or memory nodes
 * other than all of the host's (the VM's memory is not bound to nodes, only its vCPUs are pinned).
 */
export async function checkCpuset(
  cpus: { readonly list?: string; readonly field: string },
  mems: { readonly list?: string; readonly field: string },
): Promise<void> {
  if (cpus.list) {
    const { online, missing } = await againstOnline('cpu', cpus.list);
    if (missing.length > 0) {
      throw new InvalidArgument(cpus.field, `CPU ${missing.join(',')} not online on the host (${online})`);
    }
  }
  if (mems.list) {
    const { online, missing } = await againstOnline('node', mems.list);
    if (missing.length > 0) {
      throw new InvalidArgument(
        mems.field,
        `memory node ${missing.join(',')} not online on the host (${online})`,
      );
    }
    if (unionCpuLists([mems.list]) !== unionCpuLists([online])) {
      throw new InvalidArgument(
        mems.field,
        `only every online node (${online}) can be taken: a sandbox's vCPUs are pinned, its memory is not bound`,
      );
    }
  }
}

/** The union of the cpusets of `entity`'s sandbox, with `own` as `entity`'s (undefined: no pinning at all). */
export function sandboxCpuset(entity: ContainerActor, own: string | undefined): string | undefined {
  const lists: string[] = [];
  for (const sibling of entity.sandbox.containers.values()) {
    if (sibling !== entity && sibling.context.cpusetCpus) lists.push(sibling.context.cpusetCpus);
  }
  if (own) lists.push(own);
  return lists.length > 0 ? unionCpuLists(lists) : undefined;
}

/**
 * Pins the sandbox's VM to its containers' cpusets with `own` as `entity`'s; returns the CPUs it set, or
 * undefined when the hypervisor cannot pin (a VM without that ability keeps running unpinned, said in the log).
 */
export async function pinSandbox(
  ctx: EffectContext,
  entity: ContainerActor,
  own: string | undefined,
): Promise<string | undefined> {
  if (!ctx.hypervisor.pinCpus) {
    ctx.logger.warn({ sandboxId: entity.sandbox.id, containerId: entity.id }, 'hypervisor cannot pin vCPUs');
    return undefined;
  }
  return ctx.hypervisor.pinCpus(entity.sandbox.id, sandboxCpuset(entity, own));
}
