// The refreshNetwork effect (sandbox.networkRefresh): veths added to the namespace since the wiring was recorded
// get a tap, redirects and a hotplugged NIC the guest configures; NICs of veths gone are unplugged and their taps
// removed. Idempotent from the recorded wiring, so recovery runs it again after a crash.
import type { Agent } from '../agent/index.js';
import { Internal, Timeout } from '../errors/index.js';
import {
  changesMadeBefore,
  type NetnsChange,
  planLinks,
  planRefresh,
  planRemoval,
  readNetns,
  runPlan,
  type WiredLink,
} from '../network/index.js';
import { sleep } from '../timing/index.js';
import { type EffectDefinition, PartialEffect } from './effects.js';
import type { SandboxActor } from './entity.js';
import { configureNetnsNetwork, inNetnsTurn } from './netns-network.js';

/** Waits until the guest lists a NIC with each MAC (a hotplugged one takes the guest's kernel a moment). */
async function guestSees(
  agent: Agent,
  sandboxId: string,
  macs: readonly string[],
  ms: number,
): Promise<void> {
  const deadline = Date.now() + ms;
  const wanted = macs.map((m) => m.toLowerCase());
  for (;;) {
    const nics = await agent.listInterfaces(sandboxId);
    const seen = new Set(nics.map((n) => n.mac?.toLowerCase()));
    if (wanted.every((m) => seen.has(m))) return;
    if (Date.now() > deadline)
      throw new Timeout('guest NIC', ms, { sandboxId, macs: wanted.filter((m) => !seen.has(m)).join(' ') });
    await sleep(250);
  }
}

type RefreshArgs = Parameters<EffectDefinition<SandboxActor>['run']>[0];

export const refreshNetworkEffect: EffectDefinition<SandboxActor> = {
  failure: 'SandboxNetworkRefreshFailed',
  // In the sandbox's netns turn: a release after the VM died plans from the namespace once the refresh is done.
  run: (args) => inNetnsTurn(args.entity, () => refresh(args)),
};

async function refresh({ ctx, entity, timeoutMs }: RefreshArgs) {
  const wiring = entity.context.netns;
  const { plugNic, unplugNic } = ctx.hypervisor;
  if (!wiring) throw new Internal('refreshNetwork', `sandbox ${entity.id} has no recorded netns wiring`);
  if (!plugNic || !unplugNic) throw new Internal('refreshNetwork', 'this hypervisor cannot hotplug NICs');
  const { path } = wiring;
  const state = await readNetns(path);
  const { kept, added, removed } = planRefresh(state, entity.id, wiring.links);
  const changes: NetnsChange[] = [];
  let links: WiredLink[] = [...kept, ...removed];
  const outcome = () => ({
    type: 'SandboxNetworkRefreshed' as const,
    data: {
      path,
      links,
      routes: state.routes,
      added: added.filter((a) => links.includes(a)).map((l) => l.veth),
      removed: removed.filter((r) => !links.includes(r)).map((l) => l.veth),
      changes,
    },
  });
  const run = async (commands: Parameters<typeof runPlan>[1]) => {
    try {
      changes.push(...(await runPlan(path, commands)));
    } catch (err) {
      changes.push(...changesMadeBefore(err));
      throw err;
    }
  };
  try {
    // Out first: the guest lets go of the NIC, QEMU of the tap, then the tap goes (its filters with it).
    for (const link of removed) await unplugNic.call(ctx.hypervisor, entity.id, link.tap);
    const gone = new Set(removed.map((l) => l.tap));
    await run(planRemoval(state, (tap) => gone.has(tap)));
    links = [...kept];
    if (added.length > 0) {
      await run(planLinks(state, added, path));
      for (const link of added)
        await plugNic.call(ctx.hypervisor, entity.id, { tap: link.tap, mac: link.mac });
      links = [...kept, ...added];
      await guestSees(
        ctx.agent,
        entity.id,
        added.map((l) => l.mac),
        Math.max(5_000, timeoutMs - 10_000),
      );
      await configureNetnsNetwork(ctx.agent, entity.id, { ...wiring, links: added, routes: state.routes });
    }
  } catch (err) {
    throw new PartialEffect(changes.length > 0 ? [outcome()] : [], err);
  }
  ctx.logger.info(
    {
      sandboxId: entity.id,
      netns: path,
      added: added.map((l) => l.veth),
      removed: removed.map((l) => l.veth),
    },
    'netns wiring refreshed',
  );
  return [outcome()];
}
