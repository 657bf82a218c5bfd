// A pod's VM grows when its containers' limits outgrow it (UpdateContainerResources past the pod's size): the
// VM holds its base (1 vCPU, 512 MiB) plus the sum of its containers' limits, the rule that sized it at
// RunPodSandbox from the kubelet's sums (sizing.ts). Growth only (sandboxd unplugs nothing); memory in steps of
// 128 MiB, sandboxd's hotplug unit. The shim keeps each container's limits as last applied (tasks.ts).
const BASE = { vcpus: 1, memoryMiB: 512 } as const;
const MiB = 1024 * 1024;
const STEP_MIB = 128;

/** A container's limits: memory in bytes (0: none), CPUs as quota/period (0: none). */
export interface Limits {
  readonly memoryBytes: number;
  readonly cpus: number;
}

export const NO_LIMITS: Limits = { memoryBytes: 0, cpus: 0 };

/** OCI LinuxResources (a bundle's) → limits. */
export function limitsOfSpec(resources: {
  memory?: { limit?: number };
  cpu?: { quota?: number; period?: number };
}): Limits {
  const memory = resources.memory?.limit ?? 0;
  const quota = resources.cpu?.quota ?? 0;
  const period = resources.cpu?.period || 100_000;
  return { memoryBytes: Math.max(memory, 0), cpus: quota > 0 ? quota / period : 0 };
}

/** The limits after an update of some of them (container.update's members); the rest stay. */
export function limitsAfter(
  before: Limits,
  update: { memoryLimitBytes?: number; cpuQuota?: number; cpuPeriod?: number },
  bundlePeriod: number,
): Limits {
  const memoryBytes = update.memoryLimitBytes ?? before.memoryBytes;
  if (update.cpuQuota === undefined && update.cpuPeriod === undefined) return { ...before, memoryBytes };
  const period = update.cpuPeriod ?? (bundlePeriod || 100_000);
  const quota = update.cpuQuota ?? before.cpus * period;
  return { memoryBytes, cpus: quota > 0 ? quota / period : 0 };
}

export interface VmSize {
  readonly vcpus: number;
  readonly memoryMiB: number;
}

/** The size a pod with these containers' limits needs. */
export function podNeeds(limits: readonly Limits[]): VmSize {
  const bytes = limits.reduce((s, l) => s + l.memoryBytes, 0);
  const cpus = limits.reduce((s, l) => s + l.cpus, 0);
  return { vcpus: BASE.vcpus + Math.ceil(cpus - 1e-9), memoryMiB: BASE.memoryMiB + Math.ceil(bytes / MiB) };
}

/** sandbox.update's params to grow `now` to hold `need` (memory rounded up to whole steps); none when it does. */
export function growth(now: VmSize, need: VmSize): { vcpus?: number; memoryMiB?: number } | undefined {
  const out: { vcpus?: number; memoryMiB?: number } = {};
  if (need.vcpus > now.vcpus) out.vcpus = need.vcpus;
  if (need.memoryMiB > now.memoryMiB)
    out.memoryMiB = now.memoryMiB + Math.ceil((need.memoryMiB - now.memoryMiB) / STEP_MIB) * STEP_MIB;
  return Object.keys(out).length > 0 ? out : undefined;
}
