// What a template is a template of: the image, QEMU, the accelerator and the VM shape, hashed into its id.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { HypervisorError } from '../errors/index.js';
import type { Accel, GuestImagePaths, VmConfig, VmUserNetwork } from '../hypervisor/index.js';

/**
 * Bumped when the way a template is booted or saved changes (kernel params, devices): an old template then has
 * another id and is never restored into a VM that does not fit it. 2: the vmgenid device.
 */
export const TEMPLATE_RECIPE = 2;

/**
 * A template boots with the share unmounted (QEMU refuses to migrate a VM with a mounted 9p export); a clone
 * gets the same params, so its command line matches the template's device for device.
 */
export const TEMPLATE_KERNEL_PARAMS: readonly string[] = ['sandboxd.share=defer'];

/** Template network modes: a netns VM's NIC carries the veth's MAC in its migrated state, so it boots cold. */
export type TemplateNetwork = 'none' | 'user';

/** The VM shape a template is booted with (a clone's shape must be the same). */
export interface TemplateShape {
  readonly vcpus: number;
  readonly maxVcpus: number;
  readonly memoryMiB: number;
  readonly maxMemoryMiB: number;
  readonly network: TemplateNetwork;
}

/** Everything a saved VM state depends on; its hash is the template id. */
export interface TemplateIdentity extends TemplateShape {
  readonly imageVersion: string;
  readonly qemuVersion: string;
  readonly accel: Accel;
  readonly recipe: number;
}

/** The template id: the first 16 hex digits of the sha256 of the identity's fields in a fixed order. */
export function templateIdOf(identity: TemplateIdentity): string {
  const fields = [
    identity.recipe,
    identity.imageVersion,
    identity.qemuVersion,
    identity.accel,
    identity.vcpus,
    identity.maxVcpus,
    identity.memoryMiB,
    identity.maxMemoryMiB,
    identity.network,
  ];
  return createHash('sha256').update(JSON.stringify(fields)).digest('hex').slice(0, 16);
}

/** The identity of `shape` on this host (image, QEMU, accelerator). */
export function identityOf(
  shape: TemplateShape,
  image: GuestImagePaths,
  qemuVersion: string,
  accel: Accel,
): TemplateIdentity {
  return {
    recipe: TEMPLATE_RECIPE,
    imageVersion: image.version,
    qemuVersion,
    accel,
    vcpus: shape.vcpus,
    maxVcpus: shape.maxVcpus,
    memoryMiB: shape.memoryMiB,
    maxMemoryMiB: shape.maxMemoryMiB,
    network: shape.network,
  };
}

/** `qemu-system-x86_64 --version`'s version number ("7.2.19"), asked once per binary. */
const versions = new Map<string, Promise<string>>();
export function qemuVersionOf(binary: string): Promise<string> {
  let pending = versions.get(binary);
  if (!pending) {
    pending = new Promise<string>((resolve, reject) => {
      execFile(binary, ['--version'], { timeout: 10_000 }, (err, stdout) => {
        const version = /version\s+(\S+)/.exec(String(stdout))?.[1];
        if (err || !version) {
          reject(new HypervisorError('qemu version', err?.message ?? `no version in ${stdout}`, { binary }));
        } else resolve(version);
      });
    });
    pending.catch(() => versions.delete(binary));
    versions.set(binary, pending);
  }
  return pending;
}

/**
 * The VM config of a template or of a clone of it: the template's shape and kernel params, the caller's paths
 * and network (a clone's forwarded ports are host side only). `incoming`: a clone, waiting for the state.
 */
export function templateVmConfig(
  shape: TemplateShape,
  parts: {
    readonly sandboxId: string;
    readonly stateDir: string;
    readonly sharedDir: string;
    readonly image: GuestImagePaths;
    readonly network?: VmUserNetwork;
    readonly incoming: boolean;
    /** A new UUID per VM: a clone's differs from its template's, so its guest kernel reseeds (vmgenid). */
    readonly vmGenerationId: string;
  },
): VmConfig {
  const network: VmUserNetwork | undefined =
    shape.network === 'user' ? (parts.network ?? { mode: 'user', ports: [] }) : undefined;
  return {
    sandboxId: parts.sandboxId,
    stateDir: parts.stateDir,
    sharedDir: parts.sharedDir,
    image: parts.image,
    vcpus: shape.vcpus,
    maxVcpus: shape.maxVcpus,
    memoryMiB: shape.memoryMiB,
    maxMemoryMiB: shape.maxMemoryMiB,
    kernelParams: TEMPLATE_KERNEL_PARAMS,
    vmGenerationId: parts.vmGenerationId,
    ...(network ? { network } : {}),
    ...(parts.incoming ? { incoming: true } : {}),
  };
}
