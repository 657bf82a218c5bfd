// NICs on taps, at boot and plugged into (or out of) a running VM over QMP. A netns VM boots every NIC on a
// PCIe root port of its own, plus spare ports: q35's root bus cannot hotplug, a root port can.
import { HypervisorError } from '../errors/index.js';
import { sleep } from '../timing/index.js';
import type { QmpClient } from './qmp.js';
import type { TapNic, VmNetnsNetwork } from './types.js';

/** Empty root ports a netns VM boots with, for interfaces added to its namespace later. */
export const SPARE_NIC_PORTS = 4;

/** QEMU ids of a tap's NIC, its netdev and root ports: derived from names alone, so a retry finds them. */
export const nicId = (tap: string) => `nic-${tap}`;
export const netdevId = (tap: string) => `net-${tap}`;
const portId = (index: number) => `nicport${index}`;

/** Root ports, then per tap a `-netdev tap` QEMU opens by name (it runs in the tap's namespace) and its NIC. */
export function tapArgs(network: VmNetnsNetwork): string[] {
  const ports = network.nics.length + SPARE_NIC_PORTS;
  return [
    ...Array.from({ length: ports }, (_, i) => [
      '-device',
      `pcie-root-port,id=${portId(i)},bus=pcie.0,chassis=${i + 1}`,
    ]).flat(),
    ...network.nics.flatMap((nic, i) => [
      '-netdev',
      `tap,id=${netdevId(nic.tap)},ifname=${nic.tap},script=no,downscript=no`,
      '-device',
      `virtio-net-pci,id=${nicId(nic.tap)},netdev=${netdevId(nic.tap)},mac=${nic.mac},bus=${portId(i)}`,
    ]),
  ];
}

interface PciDevice {
  readonly qdev_id?: string;
  readonly pci_bridge?: { readonly devices?: readonly PciDevice[] };
}

/** Our root ports in order, with the id of the device on each (undefined: free). */
async function rootPorts(qmp: QmpClient): Promise<{ id: string; device: string | undefined }[]> {
  const buses = await qmp.execute<{ devices: PciDevice[] }[]>('query-pci');
  return buses
    .flatMap((b) => b.devices)
    .filter((d) => d.qdev_id?.startsWith('nicport'))
    .map((d) => ({ id: d.qdev_id as string, device: d.pci_bridge?.devices?.[0]?.qdev_id }))
    .sort((a, b) => Number(a.id.slice(7)) - Number(b.id.slice(7)));
}

const already = (err: unknown, text: RegExp) => err instanceof Error && text.test(err.message);

/**
 * Plugs a virtio NIC on `nic.tap` (with its MAC) into a free root port. Idempotent: a NIC of that tap already
 * plugged is left as it is. Throws HypervisorError('nic hotplug') when no root port is free (a VM booted
 * before root ports existed has none) or QEMU refuses.
 */
export async function plugNic(qmp: QmpClient, nic: TapNic): Promise<'plugged' | 'present'> {
  const ports = await rootPorts(qmp);
  if (ports.some((p) => p.device === nicId(nic.tap))) return 'present';
  const free = ports.find((p) => p.device === undefined);
  if (!free)
    throw new HypervisorError(
      'nic hotplug',
      `no free PCIe root port for ${nic.tap} (${ports.length} in all)`,
      {
        tap: nic.tap,
      },
    );
  try {
    await qmp.execute('netdev_add', {
      type: 'tap',
      id: netdevId(nic.tap),
      ifname: nic.tap,
      script: 'no',
      downscript: 'no',
    });
  } catch (err) {
    // Left by an attempt cut short before its device_add: reuse it.
    if (!already(err, /[Dd]uplicate/)) throw err;
  }
  try {
    await qmp.execute('device_add', {
      driver: 'virtio-net-pci',
      id: nicId(nic.tap),
      netdev: netdevId(nic.tap),
      mac: nic.mac,
      bus: free.id,
    });
  } catch (err) {
    await qmp.execute('netdev_del', { id: netdevId(nic.tap) }).catch(() => undefined);
    throw err;
  }
  return 'plugged';
}

/**
 * Unplugs the NIC of `tap` (the guest lets go of it: device_del resolves before it has) and deletes its netdev,
 * so QEMU closes the tap. Idempotent: a NIC already gone is fine. Throws HypervisorError('nic unplug') when
 * the guest has not released the device within `timeoutMs`.
 */
export async function unplugNic(
  qmp: QmpClient,
  tap: string,
  timeoutMs = 30_000,
): Promise<'unplugged' | 'absent'> {
  const plugged = async () => (await rootPorts(qmp)).some((p) => p.device === nicId(tap));
  const was = await plugged();
  if (was) {
    await qmp.execute('device_del', { id: nicId(tap) }).catch((err) => {
      if (!already(err, /not found|being removed|pending/i)) throw err;
    });
    const deadline = Date.now() + timeoutMs;
    while (await plugged()) {
      if (Date.now() > deadline)
        throw new HypervisorError(
          'nic unplug',
          `the guest did not release ${nicId(tap)} in ${timeoutMs} ms`,
          {
            tap,
          },
        );
      await sleep(200);
    }
  }
  await qmp.execute('netdev_del', { id: netdevId(tap) }).catch((err) => {
    if (!already(err, /not found/i)) throw err;
  });
  return was ? 'unplugged' : 'absent';
}
