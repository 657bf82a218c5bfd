// Network flags shared by `sandbox create` and `run`: --network and docker-style -p.
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

/** The network part of a sandbox config from --network and -p (ports imply the user network). */
export function networkConfig(o: { network?: string; publish?: PortMappingArg[] }) {
  const network = o.network ?? (o.publish ? 'user' : undefined);
  return {
    ...(network !== undefined ? { network } : {}),
    ...(o.publish ? { ports: o.publish } : {}),
  };
}
