// Events of a sandbox's host network wiring beyond its first attach: what recovery found and changed, and the
// refresh that plugs in (or out) interfaces added to (or removed from) the namespace after start.
//
// Changing this shape needs a schema bump and an upcaster.
import { z } from 'zod';

/** One change to the namespace: a tap, an ingress qdisc, or a redirect filter on `dev` (to `to`). */
const netnsChange = z.object({
  op: z.enum(['add', 'del']),
  kind: z.enum(['tap', 'qdisc', 'filter']),
  dev: z.string(),
  to: z.string().optional(),
});

/** A veth joined to a tap of ours (as in SandboxNetworkAttached's wiring). */
const wiredLink = z.object({
  veth: z.string(),
  tap: z.string(),
  mac: z.string(),
  mtu: z.number().int(),
  addresses: z.array(z.string()),
});

const route = z.object({
  dest: z.string(),
  gateway: z.string().optional(),
  device: z.string().optional(),
  source: z.string().optional(),
  family: z.union([z.literal(4), z.literal(6)]),
});

/** Sandbox stream schemas spread into the catalogue's. */
export const networkSchemas = {
  /**
   * Recovery found pieces of a running sandbox's recorded wiring missing in its namespace (a filter someone
   * removed, a step a crash left unmade) and made them again; what was there was kept.
   */
  SandboxNetworkRepaired: z.object({ path: z.string(), changes: z.array(netnsChange).min(1) }),
  /**
   * The taps and filters of a sandbox that runs no VM (lost, stopped, failed) were taken out of its namespace,
   * leaving it as CNI made it: by its stop or delete (recorded just before SandboxStopped or SandboxDeleted), by
   * recovery after a restart, or at once when its VM ended while the daemon ran. `reason` says which.
   */
  SandboxNetworkReleased: z.object({
    path: z.string(),
    reason: z.string(),
    changes: z.array(netnsChange).min(1),
  }),
  /**
   * A client asked (sandbox.networkRefresh) to plug a NIC in for each veth added to the namespace since the
   * wiring was recorded and to unplug the NIC of each veth gone from it (the intent; refreshNetwork does it).
   */
  SandboxNetworkRefreshRequested: z.object({}),
  /**
   * The refresh's outcome: the wiring's links and the namespace's routes now, the veths plugged in (`added`)
   * and out (`removed`), and each change made to the namespace (taps, qdiscs, filters).
   */
  SandboxNetworkRefreshed: z.object({
    path: z.string(),
    links: z.array(wiredLink),
    routes: z.array(route),
    added: z.array(z.string()),
    removed: z.array(z.string()),
    changes: z.array(netnsChange),
  }),
} as const;
