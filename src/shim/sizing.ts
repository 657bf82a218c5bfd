// A pod's VM size from its sandbox spec's annotations. containerd's CRI writes the sum of the pod's container
// resources as io.kubernetes.cri.sandbox-{cpu-period,cpu-quota,memory}; those come on top of the VM's base
// size (the guest kernel, agent and pause process need theirs), as Kata sizes a pod. An explicit
// io.sandboxd.vcpus / io.sandboxd.memory-mib (a pod annotation passed through with containerd's
// pod_annotations) wins over both. Pure: the shim checks it before it changes anything.
import { invalid } from './errdefs.js';

export const CRI_SANDBOX_CPU_PERIOD = 'io.kubernetes.cri.sandbox-cpu-period';
export const CRI_SANDBOX_CPU_QUOTA = 'io.kubernetes.cri.sandbox-cpu-quota';
export const CRI_SANDBOX_MEMORY = 'io.kubernetes.cri.sandbox-memory';
export const VCPUS_ANNOTATION = 'io.sandboxd.vcpus';
export const MEMORY_ANNOTATION = 'io.sandboxd.memory-mib';

/** sandboxd's default VM size (src/actors' defaultVmShape; the shim reaches the daemon only by its API). */
const BASE = { vcpus: 1, memoryMiB: 512 } as const;
/** The API's bounds for sandbox.create's config (the daemon raises the hotplug maxima to match). */
const LIMITS = { vcpus: 64, memoryMiB: 65536 } as const;
const MiB = 1024 * 1024;

/** The members of sandbox.create's config the pod's annotations ask for ({} when none: the daemon's default). */
export interface PodSize {
  readonly vcpus?: number;
  readonly memoryMiB?: number;
}

function integer(annotations: Record<string, string>, key: string): number | undefined {
  const text = annotations[key];
  if (text === undefined || text === '') return undefined;
  if (!/^-?\d{1,19}$/.test(text)) throw invalid(`annotation ${key}: '${text}' is not an integer`);
  return Number(text);
}

function bounded(
  annotations: Record<string, string>,
  key: string,
  min: number,
  max: number,
): number | undefined {
  const n = integer(annotations, key);
  if (n !== undefined && (n < min || n > max))
    throw invalid(`annotation ${key}: ${n} is not within ${min}..${max}`);
  return n;
}

export function podSizeOf(annotations: Record<string, string>): PodSize {
  const period = integer(annotations, CRI_SANDBOX_CPU_PERIOD) ?? 0;
  const quota = integer(annotations, CRI_SANDBOX_CPU_QUOTA) ?? 0;
  const memory = integer(annotations, CRI_SANDBOX_MEMORY) ?? 0;
  // A quota of -1 or 0 is "no CPU limit" to the kubelet: nothing to add.
  const podCpus = quota > 0 && period > 0 ? Math.ceil(quota / period) : 0;
  const podMiB = memory > 0 ? Math.ceil(memory / MiB) : 0;
  const vcpus =
    bounded(annotations, VCPUS_ANNOTATION, 1, LIMITS.vcpus) ??
    (podCpus > 0 ? BASE.vcpus + podCpus : undefined);
  const memoryMiB =
    bounded(annotations, MEMORY_ANNOTATION, 128, LIMITS.memoryMiB) ??
    (podMiB > 0 ? BASE.memoryMiB + podMiB : undefined);
  if (vcpus !== undefined && vcpus > LIMITS.vcpus) {
    throw invalid(
      `annotation ${CRI_SANDBOX_CPU_QUOTA}: ${podCpus} CPUs and the VM's own exceed ${LIMITS.vcpus} vCPUs`,
    );
  }
  if (memoryMiB !== undefined && memoryMiB > LIMITS.memoryMiB) {
    throw invalid(
      `annotation ${CRI_SANDBOX_MEMORY}: ${podMiB} MiB and the VM's own exceed ${LIMITS.memoryMiB} MiB`,
    );
  }
  return {
    ...(vcpus === undefined ? {} : { vcpus }),
    ...(memoryMiB === undefined ? {} : { memoryMiB }),
  };
}
