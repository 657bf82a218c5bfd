// The shim's command line as containerd's runtime v2 invokes it (Go flag syntax: -flag value, -flag=value).
export interface ShimArgs {
  readonly namespace: string;
  readonly address: string;
  readonly publishBinary: string;
  readonly id: string;
  readonly bundle: string;
  readonly debug: boolean;
  readonly version: boolean;
  /** start | delete | serve (our own: the long-lived server) | '' */
  readonly action: string;
}

const VALUED = new Set(['namespace', 'address', 'publish-binary', 'id', 'bundle', 'socket']);
const BOOLEAN = new Set(['debug', 'v', 'version']);

export class UsageError extends Error {}

export function parseArgs(argv: readonly string[]): ShimArgs {
  const values: Record<string, string> = {};
  const flags = new Set<string>();
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith('-') || rest.length > 0) {
      rest.push(a);
      continue;
    }
    const body = a.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    if (BOOLEAN.has(name)) {
      if (eq < 0 || body.slice(eq + 1) !== 'false') flags.add(name);
      continue;
    }
    if (!VALUED.has(name)) throw new UsageError(`flag provided but not defined: -${name}`);
    const value = eq >= 0 ? body.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`flag needs an argument: -${name}`);
    values[name] = value;
  }
  return {
    namespace: values.namespace ?? '',
    address: values.address ?? '',
    publishBinary: values['publish-binary'] ?? '',
    id: values.id ?? '',
    bundle: values.bundle ?? '',
    debug: flags.has('debug'),
    version: flags.has('v') || flags.has('version'),
    action: rest[0] ?? '',
  };
}
