// Parameter schemas shared by the API methods: ids, paths, process specs, resources (zod, strict objects).
import { isIP } from 'node:net';
import { constants } from 'node:os';
import { z } from 'zod';
import { parseCpuList } from '../bundle/index.js';
import { CGROUP_DIR_PATTERN } from '../cgroups/index.js';

/** Ids of sandboxes, containers and execs (DESIGN.md "Interfaces"). */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export const idSchema = z
  .string({ error: 'must be a string' })
  .regex(ID_PATTERN, { error: 'must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' });

/** The exec id of a container's init process is ''; every other exec id is a well-formed id. */
export const execIdSchema = z.union([z.literal(''), idSchema], {
  error: "must be '' (the container's init process) or match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
});

/** An absolute, normalised path: no `.` or `..` segments, no NUL, no doubled slashes. */
export const absolutePathSchema = z
  .string({ error: 'must be a string' })
  .min(1, { error: 'must not be empty' })
  .max(4096, { error: 'must be at most 4096 characters' })
  .refine((p) => p.startsWith('/'), { error: 'must be an absolute path' })
  .refine((p) => !p.includes('\0'), { error: 'must not contain NUL' })
  .refine((p) => !p.split('/').some((seg) => seg === '..' || seg === '.'), {
    error: 'must not contain . or .. segments (path traversal)',
  })
  .refine((p) => p === '/' || !/\/\/|\/$/.test(p), { error: 'must be normalised (no // or trailing /)' });

const SIGNAL_NAMES = new Set(Object.keys(constants.signals));
const SIGNAL_ERROR = 'must be a signal name (SIGTERM, KILL, SIGRTMIN+3, …) or number 1..64';

/** A signal by name (with or without SIG) or number (also as a string); out: the name, or the number as text. */
export const signalSchema = z
  .union([z.string().max(16), z.number()], { error: SIGNAL_ERROR })
  .transform((s, ctx) => {
    const n = typeof s === 'number' ? s : /^\d+$/.test(s) ? Number(s) : undefined;
    if (n !== undefined) {
      if (Number.isInteger(n) && n >= 1 && n <= 64) return String(n);
      ctx.addIssue({ code: 'custom', message: SIGNAL_ERROR, input: s });
      return z.NEVER;
    }
    const name = (s as string).startsWith('SIG') ? (s as string) : `SIG${s}`;
    if (SIGNAL_NAMES.has(name) || /^SIGRT(MIN|MAX)([+-]\d{1,2})?$/.test(name)) return name;
    ctx.addIssue({ code: 'custom', message: SIGNAL_ERROR, input: s });
    return z.NEVER;
  });

const CAPABILITY = /^CAP_[A-Z_]+$/;
const capabilityList = z.array(z.string().regex(CAPABILITY, { error: 'must be a CAP_… name' })).max(64);
const ociUserSchema = z.strictObject({
  uid: z.number().int().min(0).max(4294967295),
  gid: z.number().int().min(0).max(4294967295),
  umask: z.number().int().min(0).max(0o777).optional(),
  additionalGids: z.array(z.number().int().min(0).max(4294967295)).max(256).optional(),
});

export const processSchema = z.strictObject({
  args: z.array(z.string().max(65536)).min(1, { error: 'must hold at least the command' }).max(4096),
  env: z
    .array(z.string().regex(/^[^=]+=/, { error: 'must be NAME=value' }))
    .max(4096)
    .optional(),
  cwd: absolutePathSchema.optional(),
  terminal: z.boolean().optional(),
  /** "uid", "uid:gid", "name" or "name:group", or OCI's numeric {uid, gid, umask?, additionalGids?}. */
  user: z
    .union([
      z.string().regex(/^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$/, {
        error: 'must be uid, uid:gid, name or name:group',
      }),
      ociUserSchema,
    ])
    .optional(),
  /** OCI's process.consoleSize: the terminal's initial size (default 24×80). */
  consoleSize: z
    .strictObject({
      height: z.number().int().min(1).max(10000),
      width: z.number().int().min(1).max(10000),
    })
    .optional(),
  // OCI process fields crun in the guest applies as they are (what containerd's and podman's execs carry).
  // No apparmorProfile / selinuxLabel: neither runs in the guest (the bundle translation drops them too).
  capabilities: z
    .strictObject({
      bounding: capabilityList.optional(),
      effective: capabilityList.optional(),
      inheritable: capabilityList.optional(),
      permitted: capabilityList.optional(),
      ambient: capabilityList.optional(),
    })
    .optional(),
  rlimits: z
    .array(
      z.strictObject({
        type: z.string().regex(/^RLIMIT_[A-Z]+$/, { error: 'must be an RLIMIT_… name' }),
        hard: z.number().int().min(0),
        soft: z.number().int().min(0),
      }),
    )
    .max(32)
    .optional(),
  noNewPrivileges: z.boolean().optional(),
  oomScoreAdj: z.number().int().min(-1000).max(1000).optional(),
});

/** Host paths bound into a container (docker's -v source:destination[:ro]). */
export const mountsSchema = z
  .array(
    z.strictObject({
      source: absolutePathSchema,
      destination: absolutePathSchema.refine((p) => p !== '/', { error: 'must not be /' }),
      readonly: z.boolean().optional(),
    }),
  )
  .max(32)
  .superRefine((mounts, ctx) => {
    const seen = new Set<string>();
    for (const [i, m] of mounts.entries()) {
      if (seen.has(m.destination)) {
        ctx.addIssue({
          code: 'custom',
          path: [i, 'destination'],
          message: `${m.destination} is mounted twice`,
        });
      }
      seen.add(m.destination);
    }
  });

const cpuListSchema = z.string().superRefine((text, ctx) => {
  try {
    parseCpuList(text, 'list');
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message.replace(/^list: /, '') });
  }
});

export const resourcesSchema = z.strictObject({
  memoryLimitBytes: z
    .number()
    .int()
    .min(4 * 1024 * 1024)
    .optional(),
  cpuQuota: z.number().int().min(1000).optional(),
  cpuPeriod: z.number().int().min(1000).max(1_000_000).optional(),
  pidsLimit: z.number().int().min(1).optional(),
  cpuShares: z.number().int().min(2).max(262_144).optional(),
  // Host CPU / memory-node ids (cpuset syntax, "0-3,6"): the sandbox's vCPUs are pinned to the union of its
  // containers' cpusets on the host; the guest's own cgroups are not given host ids.
  cpusetCpus: cpuListSchema.optional(),
  cpusetMems: cpuListSchema.optional(),
});

const portNumber = z.number().int().min(1).max(65535);

export const ipAddressSchema = z.union([z.ipv4(), z.ipv6()], { error: 'must be an IP address' });

/** An address with its prefix length, as `ip addr` takes it: 10.0.2.15/24, fd00::2/64. */
export const cidrSchema = z.union([z.cidrv4(), z.cidrv6()], { error: 'must be an address/prefix (CIDR)' });

/** A host port forwarded into the sandbox (docker's -p [address:]host:guest[/protocol]). */
export const portMappingSchema = z.strictObject({
  hostPort: portNumber,
  guestPort: portNumber,
  protocol: z.enum(['tcp', 'udp']).optional(),
  // QEMU's hostfwd takes IPv4 only.
  hostAddress: z.ipv4({ error: 'must be an IPv4 address' }).optional(),
});

// A DNS name as resolv.conf's search line takes it (RFC 1123 labels, an optional trailing dot).
const dnsLabel = '[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
// Inside the dns union a failed .max() aborts its branch, and the union then names only config.dns: lengths are
// refines, which keep the bad member's own path (config.dns.searches.1).
const maxLength = (n: number) =>
  [(s: string) => s.length <= n, { error: `at most ${n} characters` }] as const;
const maxItems = <T extends z.ZodType>(item: T, n: number, why = '') =>
  z.array(item).refine((a) => a.length <= n, { error: `at most ${n} items${why}` });

const searchDomain = z
  .string()
  .regex(new RegExp(`^${dnsLabel}(\\.${dnsLabel})*\\.?$`), { error: 'must be a DNS domain name' })
  .refine(...maxLength(253));

// One string check, not ipAddressSchema's union: a union inside the dns union would hide the bad item's path.
const dnsServer = z.string().refine((s) => isIP(s) !== 0, { error: 'must be an IP address' });

const resolvOption = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_-]*(:[A-Za-z0-9._-]+)?$/, { error: 'must be a resolv.conf option (ndots:5)' })
  .refine(...maxLength(64));

/** CRI's DNSConfig: the guest's resolv.conf. Limits as the kubelet's (the resolver reads 3 servers at most). */
const dnsConfigSchema = z.strictObject({
  servers: maxItems(dnsServer, 3, ' (the resolver reads no more)').optional(),
  searches: maxItems(searchDomain, 32)
    .refine((s) => s.join(' ').length <= 2048, { error: 'at most 2048 characters in all' })
    .optional(),
  options: maxItems(resolvOption, 16).optional(),
});

export const sandboxConfigSchema = z
  .strictObject({
    vcpus: z.number().int().min(1).max(64).optional(),
    maxVcpus: z.number().int().min(1).max(64).optional(),
    memoryMiB: z.number().int().min(128).max(65536).optional(),
    maxMemoryMiB: z.number().int().min(128).max(262144).optional(),
    hostname: z
      .string()
      .regex(/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/, { error: 'must be a valid hostname' })
      .optional(),
    // A list of servers, or CRI's DNSConfig { servers, searches, options }.
    dns: z.union([z.array(dnsServer).max(8), dnsConfigSchema]).optional(),
    // Keys as Kubernetes spells them (prefix/name); it also keeps out __proto__, which a plain object would swallow.
    labels: z
      .record(
        z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$/, {
          error: 'label keys are letters, digits and . _ / -, starting and ending with a letter or digit',
        }),
        z.string().max(4096),
      )
      .optional(),
    /**
     * 'user': outbound NAT by QEMU plus forwarded `ports`; 'none' (default): loopback only; `{ mode: 'netns', path }`:
     * the network namespace CNI wired (its veths, addresses and routes) becomes the VM's.
     */
    network: z
      .union([
        z.enum(['none', 'user']),
        z.strictObject({
          mode: z.literal('netns'),
          path: z.string().regex(/^\/[^\0]{0,4095}$/, { error: 'must be an absolute path' }),
        }),
      ])
      .optional(),
    ports: z.array(portMappingSchema).max(64).optional(),
    /** Host cgroup directories QEMU joins once launched (each must exist: the caller makes and removes them). */
    hostCgroup: z
      .array(
        z
          .string()
          .regex(CGROUP_DIR_PATTERN, { error: 'must be a normalised cgroup directory under /sys/fs/cgroup' }),
      )
      .min(1)
      .max(16)
      .optional(),
  })
  .superRefine((config, ctx) => {
    if (config.ports && config.ports.length > 0 && config.network !== 'user') {
      ctx.addIssue({ code: 'custom', path: ['ports'], message: "needs network 'user'" });
    }
    // One host port per protocol and address, and 0.0.0.0 takes the port on every address.
    const taken: { protocol: string; address: string; port: number }[] = [];
    for (const [i, p] of (config.ports ?? []).entries()) {
      const mine = { protocol: p.protocol ?? 'tcp', address: p.hostAddress ?? '127.0.0.1', port: p.hostPort };
      const clash = taken.find(
        (t) =>
          t.protocol === mine.protocol &&
          t.port === mine.port &&
          (t.address === mine.address || t.address === '0.0.0.0' || mine.address === '0.0.0.0'),
      );
      if (clash) {
        ctx.addIssue({
          code: 'custom',
          path: ['ports', i, 'hostPort'],
          message: `${mine.protocol} port ${mine.port} is already forwarded from ${clash.address}`,
        });
      }
      taken.push(mine);
    }
    // A limit below the boot size would be silently raised by QEMU's sizing: refuse it instead.
    if (config.vcpus !== undefined && config.maxVcpus !== undefined && config.maxVcpus < config.vcpus) {
      ctx.addIssue({
        code: 'custom',
        path: ['maxVcpus'],
        message: `must be at least vcpus (${config.vcpus})`,
      });
    }
    if (
      config.memoryMiB !== undefined &&
      config.maxMemoryMiB !== undefined &&
      config.maxMemoryMiB < config.memoryMiB
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['maxMemoryMiB'],
        message: `must be at least memoryMiB (${config.memoryMiB})`,
      });
    }
  });

export const outputStreamSchema = z.enum(['stdout', 'stderr']);

/** base64 payload (stdin, copied files); at most what fits into one 1 MiB request. */
export const base64Schema = z
  .string()
  .max(1024 * 1024)
  // Whole quads only: a dangling character would be dropped without a word by Buffer.from.
  .regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, { error: 'must be base64' });

/** 2026-11-26, 2026-11-26T04:05, 2026-11-26T04:05:06.789Z, …+01:00: Date.parse alone takes "1" and "May 5". */
export const isoTimeSchema = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/, {
    error: 'must be an ISO-8601 time',
  })
  .refine((s) => !Number.isNaN(Date.parse(s)), { error: 'must be an ISO-8601 time' });
