// What to run in a namespace to wire a sandbox in (or out), from what is there now: pure and idempotent by
// construction (a step whose result exists is not planned again), so a retried start or a recovery never
// duplicates a tap or a filter.
import { createHash } from 'node:crypto';
import { InvalidArgument } from '../errors/index.js';
import type { NetnsChange, NetnsCommand, NetnsLink, NetnsState, NetnsWiring, WiredLink } from './types.js';

/** Priority of our redirect filters: distinct from the kernel's automatic ones (49152 and down). */
export const FILTER_PREF = 20617;

/** The field bad namespace input is reported under (the API's sandbox config). */
export const NETNS_FIELD = 'config.network.path';

/** Every tap of ours: `sbx` + 8 hex digits of the sandbox id's hash + `t` + index (IFNAMSIZ is 15 usable). */
const OUR_TAP = /^sbx[0-9a-f]{8}t\d{1,3}$/;

function tapPrefix(sandboxId: string): string {
  return `sbx${createHash('sha256').update(sandboxId).digest('hex').slice(0, 8)}t`;
}

/** The tap of a sandbox's `index`th link: derived from its id alone, so recovery finds it again. */
export function tapName(sandboxId: string, index: number): string {
  return `${tapPrefix(sandboxId)}${index}`;
}

/** Whether `name` is one of this sandbox's taps. */
export function isTapOf(sandboxId: string, name: string): boolean {
  return OUR_TAP.test(name) && name.startsWith(tapPrefix(sandboxId));
}

/** Links a VM NIC is made for: Ethernet links CNI made (veths and the like), not loopback, not taps. */
export function workloadLinks(state: NetnsState): NetnsLink[] {
  return state.links
    .filter((l) => l.linkType === 'ether' && l.kind !== 'tun' && !OUR_TAP.test(l.name))
    .sort((a, b) => a.ifindex - b.ifindex);
}

function redirect(from: string, to: string): NetnsCommand {
  return {
    step: 'tc filter add',
    argv: [
      'tc',
      'filter',
      'add',
      'dev',
      from,
      'parent',
      'ffff:',
      'pref',
      String(FILTER_PREF),
      'protocol',
      'all',
      'u32',
      'match',
      'u8',
      '0',
      '0',
      'action',
      'mirred',
      'egress',
      'redirect',
      'dev',
      to,
    ],
    changes: [{ op: 'add', kind: 'filter', dev: from, to }],
  };
}

/** The redirect on `from`'s ingress: 'ours' when it goes to `to`, 'none', or the device it goes to instead. */
function redirectOf(state: NetnsState, from: string, to: string): 'ours' | 'none' | string {
  const filter = state.ingress[from]?.find((f) => f.pref === FILTER_PREF);
  if (!filter) return 'none';
  return filter.redirectTo === to ? 'ours' : (filter.redirectTo ?? 'another filter');
}

/** The tap index after the highest one in use (taps keep their names while other links come and go). */
export function nextTapIndex(links: readonly WiredLink[]): number {
  const used = links.map((l) => Number(/t(\d+)$/.exec(l.tap)?.[1] ?? -1));
  return used.length === 0 ? 0 : Math.max(...used) + 1;
}

/** A veth joined to the tap `tap`: the VM's NIC takes its MAC, MTU and addresses. */
export function wiredLinkOf(veth: NetnsLink, tap: string): WiredLink {
  return { veth: veth.name, tap, mac: veth.mac, mtu: veth.mtu, addresses: veth.addresses };
}

/**
 * The wiring of `sandboxId` into the namespace at `path` and the commands that make what is missing of it.
 * Throws InvalidArgument(config.network.path) when the namespace has no link to wire, or a link is already
 * redirected elsewhere (another sandbox's wiring): nothing is run then.
 */
export function planAttach(
  state: NetnsState,
  sandboxId: string,
  path: string,
): { wiring: NetnsWiring; commands: NetnsCommand[] } {
  const veths = workloadLinks(state);
  if (veths.length === 0)
    throw new InvalidArgument(NETNS_FIELD, `${path} has no Ethernet interface to attach`);
  const links = veths.map((v, i) => wiredLinkOf(v, tapName(sandboxId, i)));
  return { wiring: { path, links, routes: state.routes }, commands: planLinks(state, links, path) };
}

/**
 * What is missing of the recorded `links` (a tap, a qdisc, a filter someone removed or a crash left unmade),
 * for recovery: links whose veth is gone are left out (a refresh unplugs them). Throws like planAttach when a
 * link is now redirected elsewhere.
 */
export function planRepair(state: NetnsState, links: readonly WiredLink[], path: string): NetnsCommand[] {
  const names = new Set(state.links.map((l) => l.name));
  return planLinks(
    state,
    links.filter((l) => names.has(l.veth)),
    path,
  );
}

/** The commands that join each veth of `links` to its tap both ways, skipping what exists already. */
export function planLinks(state: NetnsState, links: readonly WiredLink[], path: string): NetnsCommand[] {
  const names = new Set(state.links.map((l) => l.name));
  const byName = new Map(state.links.map((l) => [l.name, l]));
  const commands: NetnsCommand[] = [];
  for (const link of links) {
    for (const [from, to] of [
      [link.veth, link.tap],
      [link.tap, link.veth],
    ] as const) {
      const current = redirectOf(state, from, to);
      if (current !== 'none' && current !== 'ours')
        throw new InvalidArgument(NETNS_FIELD, `${from} in ${path} is already redirected to ${current}`);
    }
    if (!names.has(link.tap))
      commands.push({
        step: 'ip tuntap add',
        argv: ['ip', 'tuntap', 'add', 'dev', link.tap, 'mode', 'tap'],
        changes: [{ op: 'add', kind: 'tap', dev: link.tap }],
      });
    // Always: cheap, and a tap found after a crash may have been left down.
    commands.push({
      step: 'ip link set',
      argv: ['ip', 'link', 'set', 'dev', link.tap, 'mtu', String(link.mtu), 'up'],
    });
    for (const [from, to] of [
      [link.veth, link.tap],
      [link.tap, link.veth],
    ] as const) {
      // A tap made just now has no qdisc yet, whatever the state said of an older one of that name.
      const fresh = !names.has(from);
      if (fresh || !state.ingress[from]) {
        commands.push({
          step: 'tc qdisc add',
          argv: ['tc', 'qdisc', 'add', 'dev', from, 'ingress'],
          changes: [{ op: 'add', kind: 'qdisc', dev: from }],
        });
        // The kernel raises a txqueuelen of 0 (CNI's veths) to 1000 when any qdisc is attached, and a qdisc
        // delete does not lower it again: put it back at once, so the veth is left as CNI made it (it has no
        // queueing qdisc, so the length never mattered to the redirect).
        const txqlen = fresh ? undefined : byName.get(from)?.txqlen;
        if (txqlen === 0)
          commands.push({ step: 'ip link set', argv: ['ip', 'link', 'set', 'dev', from, 'txqueuelen', '0'] });
      }
      if (fresh || redirectOf(state, from, to) === 'none') commands.push(redirect(from, to));
    }
  }
  return commands;
}

/**
 * The commands that take every trace of `sandboxId` out of the namespace: our redirect filters on other
 * links (with their ingress qdisc when no other filter lives there) and our taps (their own qdiscs and filters
 * go with them). Empty when nothing of ours is left.
 */
export function planDetach(state: NetnsState, sandboxId: string): NetnsCommand[] {
  return planRemoval(state, (name) => isTapOf(sandboxId, name));
}

/** The commands that remove the taps `isRemoved` picks and the redirects of other links to them. */
export function planRemoval(state: NetnsState, isRemoved: (tap: string) => boolean): NetnsCommand[] {
  const gone = state.links.filter((l) => OUR_TAP.test(l.name) && isRemoved(l.name)).map((l) => l.name);
  const commands: NetnsCommand[] = [];
  for (const link of state.links) {
    if (gone.includes(link.name)) continue;
    const filters = state.ingress[link.name] ?? [];
    const ours = filters.filter(
      (f) => f.pref === FILTER_PREF && f.redirectTo && OUR_TAP.test(f.redirectTo) && isRemoved(f.redirectTo),
    );
    if (ours.length === 0) continue;
    const changes = ours.map((f) => ({
      op: 'del' as const,
      kind: 'filter' as const,
      dev: link.name,
      to: f.redirectTo as string,
    }));
    if (ours.length === filters.length) {
      commands.push({
        step: 'tc qdisc del',
        argv: ['tc', 'qdisc', 'del', 'dev', link.name, 'ingress'],
        changes: [...changes, { op: 'del', kind: 'qdisc', dev: link.name }],
      });
    } else {
      commands.push({
        step: 'tc filter del',
        argv: ['tc', 'filter', 'del', 'dev', link.name, 'parent', 'ffff:', 'pref', String(FILTER_PREF)],
        changes,
      });
    }
  }
  for (const tap of gone) {
    const own = (state.ingress[tap] ?? [])
      .filter((f) => f.pref === FILTER_PREF && f.redirectTo)
      .map((f) => ({ op: 'del' as const, kind: 'filter' as const, dev: tap, to: f.redirectTo as string }));
    commands.push({
      step: 'ip link del',
      argv: ['ip', 'link', 'del', 'dev', tap],
      changes: [...own, { op: 'del', kind: 'tap', dev: tap }],
    });
  }
  return commands;
}

/** Every change the commands make, in order (what an event records). */
export function changesOf(commands: readonly NetnsCommand[]): NetnsChange[] {
  return commands.flatMap((c) => c.changes ?? []);
}

/**
 * What a refresh changes, from the namespace now and the recorded `links`: links whose veth is gone (or came
 * back with another MAC: a new veth of the same name) are removed; Ethernet links not recorded are added, each
 * with the next tap name (the same on a retry, as the recorded links are the same).
 */
export function planRefresh(
  state: NetnsState,
  sandboxId: string,
  links: readonly WiredLink[],
): { kept: WiredLink[]; added: WiredLink[]; removed: WiredLink[] } {
  const veths = new Map(workloadLinks(state).map((v) => [v.name, v]));
  const same = (l: WiredLink) => veths.get(l.veth)?.mac.toLowerCase() === l.mac.toLowerCase();
  const kept = links.filter(same);
  const removed = links.filter((l) => !same(l));
  const keptVeths = new Set(kept.map((l) => l.veth));
  let next = nextTapIndex(links);
  const added = [...veths.values()]
    .filter((v) => !keptVeths.has(v.name))
    .map((v) => wiredLinkOf(v, tapName(sandboxId, next++)));
  return { kept, added, removed };
}
