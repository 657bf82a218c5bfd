// vCPU and memory hotplug over QMP (the guest onlines them; see the agent's OnlineCpuMem).
import { InvalidArgument } from '../errors/index.js';
import { MEMORY_SLOTS } from './cmdline.js';
import type { QmpClient } from './qmp.js';

interface HotpluggableCpu {
  readonly type: string;
  readonly 'vcpus-count': number;
  readonly props: Readonly<Record<string, number>>;
  readonly 'qom-path'?: string;
}

interface MemoryDeviceInfo {
  readonly type: string;
  readonly data: { readonly id?: string; readonly memdev?: string; readonly size?: number };
}

/** Plugs vCPUs (in topology order) until `total` are present; returns how many QEMU then has. */
export async function hotplugCpus(qmp: QmpClient, total: number): Promise<number> {
  const slots = await qmp.execute<HotpluggableCpu[]>('query-hotpluggable-cpus');
  if (!Number.isInteger(total) || total < 1 || total > slots.length) {
    throw new InvalidArgument('total', `must be an integer in 1..${slots.length} (maxVcpus)`);
  }
  const free = slots
    .filter((slot) => slot['qom-path'] === undefined)
    .sort((a, b) => compareProps(a.props, b.props));
  let plugged = slots.length - free.length;
  for (const slot of free) {
    if (plugged >= total) break;
    const id = `cpu-${Object.values(slot.props).join('-')}`;
    await qmp.execute('device_add', { driver: slot.type, id, ...slot.props });
    plugged += slot['vcpus-count'];
  }
  const cpus = await qmp.execute<unknown[]>('query-cpus-fast');
  return cpus.length;
}

/** Adds one DIMM of `sizeMiB` (a RAM backend and its pc-dimm); returns the DIMM's id. */
export async function hotplugMemory(qmp: QmpClient, sandboxId: string, sizeMiB: number): Promise<string> {
  if (!Number.isInteger(sizeMiB) || sizeMiB <= 0 || sizeMiB % 2 !== 0) {
    throw new InvalidArgument('sizeMiB', 'must be a positive even number of MiB');
  }
  const devices = await qmp.execute<MemoryDeviceInfo[]>('query-memory-devices');
  // Every VM is launched with MEMORY_SLOTS DIMM slots (cmdline.ts): say so before QEMU half-adds a backend.
  const dimms = devices.filter((device) => device.type === 'dimm').length;
  if (dimms >= MEMORY_SLOTS) {
    throw new InvalidArgument('sizeMiB', `no free DIMM slot: all ${MEMORY_SLOTS} are in use`, {
      sandboxId,
    });
  }
  const taken = new Set(devices.map((device) => device.data.id));
  let index = devices.length;
  while (taken.has(`dimm-${index}`)) index++;
  const memdev = `mem-${index}`;
  await qmp.execute('object-add', {
    'qom-type': 'memory-backend-ram',
    id: memdev,
    size: sizeMiB * 1024 * 1024,
  });
  try {
    await qmp.execute('device_add', { driver: 'pc-dimm', id: `dimm-${index}`, memdev });
  } catch (err) {
    await qmp.execute('object-del', { id: memdev }).catch(() => undefined);
    throw err;
  }
  return `dimm-${index}`;
}

function compareProps(a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>): number {
  for (const key of ['socket-id', 'die-id', 'core-id', 'thread-id']) {
    const diff = (a[key] ?? 0) - (b[key] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}
