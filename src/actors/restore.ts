// A sandbox's VM restored from a template (issue 18), and the identity a clone is given before anything runs in
// it. The choice "template or cold" is in the start's intent; this file carries it out.
import { randomBytes, randomUUID } from 'node:crypto';
import type { GuestStorage } from '../agent/index.js';
import { asSandboxdError, HypervisorError } from '../errors/index.js';
import type { NewEvent, SandboxEventData } from '../events/index.js';
import { SANDBOX_SHARE_TAG, type VmConfig, type VmHandle } from '../hypervisor/index.js';
import { failureOf } from './effect-runner.js';
import { type EffectContext, quietly } from './effects.js';

export type TemplateIntent = NonNullable<SandboxEventData['SandboxStartRequested']['template']>;

/** How long QEMU may take to load a template's state (exec:cat of ≈ 100–150 MB; TCG on a loaded host). */
const RESTORE_TIMEOUT_MS = 60_000;

/** Bytes of host randomness a clone's guest pool is stirred with (ReseedRandomDev). */
const SEED_BYTES = 512;

/**
 * The sandbox share as a cold guest's init mounts it (src/image/guest-init.sh, guestContract.guestSharedDir): a
 * template was saved with it unmounted (QEMU cannot migrate a mounted 9p export), so a clone's CreateSandbox
 * mounts it, now backed by the clone's own host dir.
 */
export const SHARE_STORAGE: GuestStorage = {
  source: SANDBOX_SHARE_TAG,
  mountPoint: '/run/sandboxd/shared',
  fstype: '9p',
  options: ['trans=virtio', 'version=9p2000.L', 'msize=262144'],
};

export type RestoreOutcome =
  | { readonly handle: VmHandle; readonly event: NewEvent }
  | { readonly handle?: undefined; readonly event: NewEvent };

/**
 * Launches `vm` as a clone of `template` (same devices, `-incoming defer`, a new vmgenid so the guest kernel
 * reseeds), loads the state and runs it. Anything short of a running clone (QEMU refusing the state, the image
 * changed, no restore in this hypervisor) leaves no QEMU and returns the SandboxRestoreFailed to record, after
 * which the caller boots cold. An aborted launch (its deadline) throws: no fallback then.
 */
export async function restoreFromTemplate(
  ctx: EffectContext,
  vm: VmConfig,
  template: TemplateIntent,
  signal: AbortSignal,
): Promise<RestoreOutcome> {
  const { hypervisor, logger } = ctx;
  const log = logger.child({ sandboxId: vm.sandboxId, templateId: template.id });
  const started = performance.now();
  try {
    if (!hypervisor.restoreState) {
      throw new HypervisorError('restore state', 'this hypervisor cannot restore a saved VM', {});
    }
    if (vm.image.version !== template.imageVersion) {
      throw new HypervisorError(
        'restore state',
        `template ${template.id} was booted from image ${template.imageVersion}; this is ${vm.image.version}`,
        { templateId: template.id },
      );
    }
    const clone: VmConfig = {
      ...vm,
      kernelParams: template.kernelParams,
      incoming: true,
      vmGenerationId: randomUUID(),
    };
    const handle = await hypervisor.launch(clone, signal);
    const launchMs = Math.round(performance.now() - started);
    await hypervisor.restoreState(vm.sandboxId, template.stateFile, RESTORE_TIMEOUT_MS);
    const restoreMs = Math.round(performance.now() - started) - launchMs;
    log.info({ step: 'restore state', launchMs, restoreMs }, 'VM restored from its template');
    const data = { templateId: template.id, imageVersion: template.imageVersion, launchMs, restoreMs };
    return { handle, event: { type: 'SandboxRestored', data } };
  } catch (err) {
    await quietly(hypervisor.destroy(vm.sandboxId, vm.stateDir), logger, 'destroy refused clone');
    if (signal.aborted) throw err;
    const error = failureOf('restore state', asSandboxdError(err, 'restore state'));
    log.warn({ step: 'restore state', err }, 'restoring from the template failed; booting cold');
    return { event: { type: 'SandboxRestoreFailed', data: { templateId: template.id, error } } };
  }
}

type IdentityStep = SandboxEventData['SandboxIdentityRefreshed']['steps'][number];

/**
 * Gives a restored guest what must not be shared with its template and siblings, before CreateSandbox: host
 * randomness into its pool (its kernel already reseeded on the new vmgenid) and the host's clock (the template's
 * stopped when it was saved). The hostname is CreateSandbox's; the caller times it as the third step. Idempotent.
 */
export async function refreshIdentity(ctx: EffectContext, sandboxId: string): Promise<IdentityStep[]> {
  const steps: IdentityStep[] = [];
  const timed = async (step: IdentityStep['step'], run: () => Promise<void>) => {
    const t0 = performance.now();
    await run();
    steps.push({ step, ms: Math.round((performance.now() - t0) * 10) / 10 });
  };
  await timed('reseed', () => ctx.agent.reseedRandomDev(sandboxId, randomBytes(SEED_BYTES)));
  await timed('clock', () => ctx.agent.setGuestDateTime(sandboxId, new Date()));
  return steps;
}
