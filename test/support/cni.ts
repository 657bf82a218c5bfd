// Network namespaces wired by Debian's CNI plugins (bridge + host-local + loopback), invoked as a CNI runtime
// does: CNI_COMMAND=ADD with the config on stdin, DEL at the end. Shared by the netns tests and bench:net.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export const CNI_PATH = '/usr/lib/cni';

/** Runs a command, returns its stdout (throws on a non-zero exit). */
export const sh = (...argv: string[]): string =>
  execFileSync(argv[0] as string, argv.slice(1), { encoding: 'utf8' });

/** Runs a command, ignoring its failure (clean-up of what may never have been made). */
export function quietly(...argv: string[]): void {
  try {
    execFileSync(argv[0] as string, argv.slice(1), { stdio: 'ignore' });
  } catch {
    // never made, or gone already
  }
}

interface CniResult {
  ips: { address: string; gateway?: string }[];
}

/** One bridge network: its subnet (10.215.<octet>.0/24 by default), gateway .1 and IPAM state in `dir`. */
export class CniBridge {
  readonly subnet: string;
  readonly gateway: string;
  readonly config: object;
  constructor(
    readonly name: string,
    readonly octet: number,
    dir: string,
    readonly prefix = '10.215',
    /** host-local's routes; a second network of a namespace takes none (the first has the default route). */
    routes: readonly { dst: string }[] = [{ dst: '0.0.0.0/0' }],
  ) {
    this.subnet = `${prefix}.${octet}.0/24`;
    this.gateway = `${prefix}.${octet}.1`;
    this.config = {
      cniVersion: '1.0.0',
      name: `sbx${name}`,
      type: 'bridge',
      bridge: name,
      isGateway: true,
      ipMasq: false,
      ipam: {
        type: 'host-local',
        subnet: this.subnet,
        gateway: this.gateway,
        routes,
        dataDir: join(dir, `ipam-${name}`),
      },
    };
  }

  /** Deletes the bridge (CNI leaves it when the last veth goes). */
  remove(): void {
    quietly('ip', 'link', 'del', this.name);
  }
}

const LOOPBACK = { cniVersion: '1.0.0', name: 'lo', type: 'loopback' };

/** A namespace made with `ip netns add`, wired as CRI wires a pod's. */
export class CniNamespace {
  readonly path: string;
  /** Interfaces CNI ADDed, so close() can DEL them. */
  readonly #added = new Map<string, CniBridge>();
  #loopback = false;

  constructor(readonly name: string) {
    this.path = `/run/netns/${name}`;
    sh('ip', 'netns', 'add', name);
  }

  /** Runs one CNI plugin against this namespace. */
  cni(command: 'ADD' | 'DEL', plugin: string, ifname: string, config: object): string {
    return execFileSync(join(CNI_PATH, plugin), [], {
      input: JSON.stringify(config),
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        CNI_COMMAND: command,
        CNI_CONTAINERID: this.name,
        CNI_NETNS: this.path,
        CNI_IFNAME: ifname,
        CNI_PATH,
      },
    });
  }

  /** CNI ADD of loopback (once) and of `bridge` as `ifname`: returns the address CNI gave it (a.b.c.d/24). */
  add(bridge: CniBridge, ifname = 'eth0'): string {
    if (!this.#loopback) {
      this.cni('ADD', 'loopback', 'lo', LOOPBACK);
      this.#loopback = true;
    }
    const result = JSON.parse(this.cni('ADD', 'bridge', ifname, bridge.config)) as CniResult;
    this.#added.set(ifname, bridge);
    const address = result.ips[0]?.address;
    if (!address) throw new Error(`CNI ADD of ${ifname} gave no address: ${JSON.stringify(result)}`);
    return address;
  }

  /** CNI DEL of `ifname` (its veth goes, its address returns to the pool). */
  del(ifname = 'eth0'): void {
    const bridge = this.#added.get(ifname);
    if (!bridge) return;
    this.cni('DEL', 'bridge', ifname, bridge.config);
    this.#added.delete(ifname);
  }

  /** CNI DEL of loopback (a no-op for the plugin, done as a runtime does). */
  delLoopback(): void {
    try {
      this.cni('DEL', 'loopback', 'lo', LOOPBACK);
    } catch {
      // the namespace may be gone
    }
    this.#loopback = false;
  }

  /** `ip -o link show` in the namespace, without the per-line details after the backslash. */
  links(): string {
    return sh('ip', '-n', this.name, '-o', 'link', 'show').replace(/\\.*$/gm, '').trim();
  }

  /** The tc filters of `dev`'s ingress and egress hooks. */
  filters(dev = 'eth0'): string {
    return ['ingress', 'egress']
      .map((k) => sh('tc', '-n', this.name, 'filter', 'show', 'dev', dev, k).trim())
      .join('\n');
  }

  qdiscs(): string {
    return sh('tc', '-n', this.name, 'qdisc', 'show').trim();
  }

  /** DELs what was ADDed (best effort) and deletes the namespace. */
  close(): void {
    for (const ifname of [...this.#added.keys()]) {
      try {
        this.del(ifname);
      } catch {
        // the namespace delete below takes the veth anyway
      }
    }
    if (this.#loopback) this.delLoopback();
    quietly('ip', 'netns', 'del', this.name);
  }
}
