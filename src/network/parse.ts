// iproute2's JSON output (`ip -j`, `tc -j`) into NetnsState: pure, so it is tested on recorded output.
import type { IngressFilter, NetnsLink, NetnsRoute } from './types.js';

type Json = Record<string, unknown>;

function records(text: string): Json[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  const parsed: unknown = JSON.parse(trimmed);
  if (!Array.isArray(parsed)) throw new SyntaxError('iproute2 JSON output is not an array');
  return parsed.filter((x): x is Json => typeof x === 'object' && x !== null);
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

/** Links with their global addresses, from `ip -d -j addr show`. */
export function parseLinks(text: string): NetnsLink[] {
  return records(text).map((r) => {
    const info = (r.linkinfo ?? {}) as Json;
    const flags = Array.isArray(r.flags) ? r.flags : [];
    const addrInfo = Array.isArray(r.addr_info) ? (r.addr_info as Json[]) : [];
    return {
      name: str(r.ifname) ?? '',
      ifindex: num(r.ifindex) ?? 0,
      mac: str(r.address) ?? '',
      mtu: num(r.mtu) ?? 1500,
      // iproute2 leaves the key out when it is 0.
      txqlen: num(r.txqlen) ?? 0,
      kind: str(info.info_kind),
      linkType: str(r.link_type) ?? '',
      // Link-local and host addresses belong to the namespace's own stack, not to the workload's network.
      addresses: addrInfo
        .filter((a) => a.scope === 'global' && typeof a.local === 'string')
        .map((a) => `${a.local as string}/${num(a.prefixlen) ?? (a.family === 'inet6' ? 128 : 32)}`),
      up: flags.includes('UP'),
    };
  });
}

/**
 * Routes the guest must be given, from `ip -j [-6] route show`: the kernel's own (a connected subnet, made
 * when an address is added) and IPv6 link-local and multicast ones are left out, as the guest's kernel makes
 * its own.
 */
export function parseRoutes(text: string, family: 4 | 6): NetnsRoute[] {
  const routes: NetnsRoute[] = [];
  for (const r of records(text)) {
    const dest = str(r.dst);
    if (!dest || r.protocol === 'kernel') continue;
    if (family === 6 && (dest.startsWith('fe80:') || dest.startsWith('ff00:') || r.type === 'multicast'))
      continue;
    const gateway = str(r.gateway);
    const device = str(r.dev);
    const source = str(r.prefsrc);
    routes.push({
      dest,
      ...(gateway ? { gateway } : {}),
      ...(device ? { device } : {}),
      ...(source ? { source } : {}),
      family,
    });
  }
  return routes;
}

/** Devices that have an ingress qdisc, from `tc -j qdisc show`. */
export function parseIngressQdiscs(text: string): string[] {
  return records(text)
    .filter((q) => q.kind === 'ingress' && typeof q.dev === 'string')
    .map((q) => q.dev as string);
}

/** The filters of one ingress hook, from `tc -j filter show dev X ingress` (one per pref). */
export function parseIngressFilters(text: string): IngressFilter[] {
  const byPref = new Map<number, IngressFilter>();
  for (const f of records(text)) {
    const pref = num(f.pref);
    if (pref === undefined) continue;
    const options = (f.options ?? {}) as Json;
    const actions = Array.isArray(options.actions) ? (options.actions as Json[]) : [];
    const redirectTo = actions.map((a) => str(a.to_dev)).find((d) => d !== undefined);
    const known = byPref.get(pref);
    if (!known || (redirectTo && !known.redirectTo))
      byPref.set(pref, { pref, ...(redirectTo ? { redirectTo } : {}) });
  }
  return [...byPref.values()];
}
