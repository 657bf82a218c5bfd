// Flags shared by `sandbox create`, `container create` and `run`: --network, docker-style -p and -v.
import { resolve } from 'node:path';
import { InvalidArgumentError } from 'commander';

export interface PortMappingArg {
  hostPort: number;
  guestPort: number;
  protocol?: 'tcp' | 'udp';
  hostAddress?: string;
}

/** `-p [address:]hostPort:guestPort[/tcp|udp]`, docker's spelling; repeatable. */
export const collectPort = (v: string, prev: PortMappingArg[] = []): PortMappingArg[] => {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/.exec(v);
  if (!m) throw new InvalidArgumentError(`${v} is not [address:]hostPort:guestPort[/tcp|udp]`);
  return [
    ...prev,
    {
      hostPort: Number(m[2]),
      guestPort: Number(m[3]),
      ...(m[4] ? { protocol: m[4] as 'tcp' | 'udp' } : {}),
      ...(m[1] ? { hostAddress: m[1] } : {}),
    },
  ];
};

/** `--netns PATH`'s help, shared by `sandbox create` and `run`. */
export const NETNS_HELP =
  'plug the VM into this network namespace (/run/netns/NAME, /proc/PID/ns/net): CNI-style';

/**
 * The network part of a sandbox config from --network, --netns and -p (ports imply the user network). The
 * daemon checks the namespace; --netns with --network or -p is for it to refuse, naming the field.
 */
export function networkConfig(o: { network?: string; netns?: string; publish?: PortMappingArg[] }) {
  const network =
    o.netns !== undefined
      ? { mode: 'netns' as const, path: resolve(o.netns) }
      : (o.network ?? (o.publish ? 'user' : undefined));
  return {
    ...(network !== undefined ? { network } : {}),
    ...(o.publish ? { ports: o.publish } : {}),
  };
}

/**
 * The `dns` of a sandbox config from --dns, --dns-search and --dns-option: the plain list of servers when only
 * --dns is given, CRI's DNSConfig shape otherwise. The daemon validates each part, naming the field.
 */
export function dnsConfig(o: { dns?: string[]; dnsSearch?: string[]; dnsOption?: string[] }) {
  if (!o.dnsSearch && !o.dnsOption) return o.dns ? { dns: o.dns } : {};
  return {
    dns: {
      ...(o.dns ? { servers: o.dns } : {}),
      ...(o.dnsSearch ? { searches: o.dnsSearch } : {}),
      ...(o.dnsOption ? { options: o.dnsOption } : {}),
    },
  };
}

export interface VolumeArg {
  source: string;
  destination: string;
  readonly?: boolean;
}

/** `-v source:destination[:ro|rw]`, docker's spelling (source made absolute); repeatable. */
export const collectVolume = (v: string, prev: VolumeArg[] = []): VolumeArg[] => {
  const parts = v.split(':');
  const mode = parts.length === 3 ? parts[2] : undefined;
  if (
    parts.length < 2 ||
    parts.length > 3 ||
    !parts[0] ||
    !parts[1] ||
    (mode && mode !== 'ro' && mode !== 'rw')
  ) {
    throw new InvalidArgumentError(`${v} is not source:destination[:ro|rw]`);
  }
  return [
    ...prev,
    { source: resolve(parts[0]), destination: parts[1], ...(mode === 'ro' ? { readonly: true } : {}) },
  ];
};
