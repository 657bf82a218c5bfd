// The network rule of reconciliation: after a restart each netns sandbox's taps and filters are checked against
// its recorded wiring. A VM that runs keeps what is there and gets what is missing made again; a sandbox that
// runs no VM (lost, stopped, failed) has everything of ours taken out of its namespace. Each change is an event.
// The same release runs while the daemon is up, as soon as a VM is known gone (VmExited, SandboxLost).
import type { NetnsChange } from '../network/index.js';
import { changesMadeBefore, detachNetns, repairNetns } from '../network/index.js';
import type { SandboxActor } from './entity.js';
import type { Kernel } from './kernel.js';
import { inNetnsTurn, netnsOf } from './netns-network.js';
import { supervised } from './supervision.js';

type Record_ = (type: string, data: unknown) => Promise<unknown>;

/** States whose VM runs (or is being brought up from a launched VM): its wiring must be whole. */
const RUNS = new Set(['running', 'paused', 'pausing', 'resuming', 'starting']);
/** States that hold nothing in the namespace. Stopping and deleting are left to their retried effects. */
const HOLDS_NOTHING = new Set(['created', 'stopped', 'failed', 'lost']);

/**
 * Brings the sandbox's namespace in line with what it is now (after the rest of its reconciliation). Never
 * throws: a failure is logged and what was changed before it is still recorded, so `events show` says it.
 * Runs in the sandbox's netns turn, its event recorded before the turn ends: a second call right after finds
 * nothing left to change and records nothing.
 */
export async function reconcileNetns(rt: Kernel, sandbox: SandboxActor, record: Record_): Promise<void> {
  const path = netnsOf(sandbox.context.config);
  if (!path) return;
  if (HOLDS_NOTHING.has(sandbox.state)) {
    // A failure recorded just now runs releaseVm, which unwires too: let it end, then take what is left.
    // Before the turn: releaseVm's unwire takes the turn itself.
    await sandbox.quiesced();
  }
  await inNetnsTurn(sandbox, () => reconcileInTurn(rt, sandbox, path, record));
}

async function reconcileInTurn(rt: Kernel, sandbox: SandboxActor, path: string, record: Record_) {
  const state = sandbox.state;
  const wiring = sandbox.context.netns;
  const logger = rt.logger.child({ sandboxId: sandbox.id, netns: path });
  let made: NetnsChange[] = [];
  let type: 'SandboxNetworkRepaired' | 'SandboxNetworkReleased';
  try {
    if (RUNS.has(state) && sandbox.context.handle && wiring) {
      type = 'SandboxNetworkRepaired';
      made = await repairNetns(path, sandbox.id, wiring.links, logger);
    } else if (HOLDS_NOTHING.has(state)) {
      type = 'SandboxNetworkReleased';
      made = await detachNetns(path, sandbox.id, logger);
    } else return;
  } catch (err) {
    made = changesMadeBefore(err);
    type = RUNS.has(state) ? 'SandboxNetworkRepaired' : 'SandboxNetworkReleased';
    logger.error({ err, state }, 'reconciling the sandbox’s network namespace failed');
  }
  if (made.length === 0) return;
  await record(
    type,
    type === 'SandboxNetworkRepaired'
      ? { path, changes: made }
      : { path, reason: `sandbox ${state}`, changes: made },
  );
}

/**
 * A VM that ended while the daemon runs (VmExited, SandboxLost) holds nothing in its namespace any more: its
 * taps, qdiscs and redirects are taken out at once, as recovery would after a restart, and recorded as
 * SandboxNetworkReleased (a cascade of the VM's end). Fire and forget: failures are logged.
 */
export function releaseNetnsOfLost(rt: Kernel, sandbox: SandboxActor): Promise<void> {
  return reconcileNetns(rt, sandbox, (type, data) =>
    rt.record(sandbox, { type, data, correlationId: supervised.cascade }),
  );
}
