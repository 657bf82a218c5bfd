// What a network namespace holds (as iproute2 reports it) and how a sandbox is wired into it.
//
// NetnsWiring is persisted in SandboxNetworkAttached: changing its shape needs a schema bump and an upcaster.

/** One link of the namespace, from `ip -d -j addr show`. */
export interface NetnsLink {
  readonly name: string;
  readonly ifindex: number;
  readonly mac: string;
  readonly mtu: number;
  /** txqueuelen (`ip` prints it as qlen); 0 for CNI's veths, which queue nothing. */
  readonly txqlen: number;
  /** linkinfo.info_kind: veth, tun, bridge, …; undefined for plain devices (lo). */
  readonly kind: string | undefined;
  readonly linkType: string;
  /** Global-scope addresses with their prefix: 10.1.2.3/24, fd00::3/64. */
  readonly addresses: readonly string[];
  readonly up: boolean;
}

/** A route of the namespace, from `ip -j route show` (-4 and -6). */
export interface NetnsRoute {
  readonly dest: string;
  readonly gateway?: string;
  readonly device?: string;
  readonly source?: string;
  readonly family: 4 | 6;
}

/** One filter on a device's ingress hook, from `tc -j filter show dev X ingress`. */
export interface IngressFilter {
  readonly pref: number;
  /** The device a mirred action redirects to, if any. */
  readonly redirectTo?: string;
}

/** What matters of a namespace to wire a VM into it. */
export interface NetnsState {
  readonly links: readonly NetnsLink[];
  readonly routes: readonly NetnsRoute[];
  /** Per device that has an ingress qdisc: its filters. Devices without one are absent. */
  readonly ingress: Readonly<Record<string, readonly IngressFilter[]>>;
}

/** One veth of the namespace joined to a tap of ours: the VM's NIC takes the veth's MAC, MTU and addresses. */
export interface WiredLink {
  readonly veth: string;
  readonly tap: string;
  readonly mac: string;
  readonly mtu: number;
  readonly addresses: readonly string[];
}

/** A resolver config, in CRI's DNSConfig shape: resolv.conf's nameserver, search and options lines. */
export interface DnsConfig {
  readonly servers: readonly string[];
  readonly searches: readonly string[];
  /** resolv.conf options as written there: ndots:5, edns0, timeout:2. */
  readonly options: readonly string[];
}

/** How a sandbox is plugged into a namespace: its links in NIC order, and the namespace's routes. */
export interface NetnsWiring {
  readonly path: string;
  readonly links: readonly WiredLink[];
  readonly routes: readonly NetnsRoute[];
  /** The namespace's /etc/netns/NAME/resolv.conf (ip-netns's convention), when it has one. */
  readonly dns?: DnsConfig;
}

/**
 * One change to a namespace made by us, as events record it: a tap, an ingress qdisc, or a redirect filter on
 * `dev` (to `to`). Persisted in SandboxNetworkRepaired / SandboxNetworkReleased / SandboxNetworkRefreshed.
 */
export interface NetnsChange {
  readonly op: 'add' | 'del';
  readonly kind: 'tap' | 'qdisc' | 'filter';
  readonly dev: string;
  readonly to?: string;
}

/** A command run inside the namespace (argv of ip or tc), with the step name for errors and logs. */
export interface NetnsCommand {
  readonly step: string;
  readonly argv: readonly string[];
  /** What it changes, for the log; absent for settings of a link already ours (mtu, up, txqueuelen). */
  readonly changes?: readonly NetnsChange[];
}
