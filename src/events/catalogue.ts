// The event catalogue: every event type of sandboxes, containers and execs, with validators, schemas and upcasters.
//
// Changing this shape needs a schema bump and an upcaster.
// (Every `data` shape below is persisted in the log; old records are lifted on read, never rewritten.)
import { z } from 'zod';
import { InvalidArgument } from '../errors/index.js';
import { networkSchemas } from './network.js';
import { EventRegistry, type EventTypeDefinition, type Upcaster } from './registry.js';

const entityId = z.string().min(1).max(64);
/** Which life of a reused id (see lifeOf): absent = the first. */
const incarnation = z.number().int().min(2).optional();

const exitFields = {
  exitCode: z.number().int(),
  /** Signal name when the process was killed by a signal. */
  signal: z.string().optional(),
};

/** Why an effect failed, named by step (the error class's kind and message are kept for people). */
const failure = z.object({
  step: z.string(),
  kind: z.string(),
  message: z.string(),
});

const sandboxConfig = z.object({
  vcpus: z.number().int().positive().optional(),
  maxVcpus: z.number().int().positive().optional(),
  memoryMiB: z.number().int().positive().optional(),
  maxMemoryMiB: z.number().int().positive().optional(),
  hostname: z.string().optional(),
  // Widened (CRI's DNSConfig shape added beside the list of servers): older records stay valid.
  dns: z
    .union([
      z.array(z.string()),
      z.object({
        servers: z.array(z.string()).optional(),
        searches: z.array(z.string()).optional(),
        options: z.array(z.string()).optional(),
      }),
    ])
    .optional(),
  labels: z.record(z.string(), z.string()).optional(),
  // Widened (netns added): every older record is still valid, so no schema bump.
  network: z
    .union([z.enum(['none', 'user']), z.object({ mode: z.literal('netns'), path: z.string() })])
    .optional(),
  ports: z
    .array(
      z.object({
        hostPort: z.number().int(),
        guestPort: z.number().int(),
        protocol: z.enum(['tcp', 'udp']).optional(),
        hostAddress: z.string().optional(),
      }),
    )
    .optional(),
  // Added without a schema bump (optional): host cgroup directories QEMU joins at launch.
  hostCgroup: z.array(z.string()).optional(),
});

/** Everything a restarted daemon needs to `hypervisor.attach` the VM again. */
const vmHandle = z.object({
  sandboxId: entityId,
  pid: z.number().int().positive(),
  pidStartTime: z.number().int().nonnegative(),
  accel: z.enum(['kvm', 'tcg']),
  stateDir: z.string(),
  qmpSocket: z.string(),
  agentSocket: z.string(),
  /** The output port's socket; absent for VMs an older daemon started (their output goes over gRPC). */
  outputSocket: z.string().optional(),
  consoleLog: z.string(),
});

const processSpec = z.object({
  args: z.array(z.string()).min(1),
  env: z.array(z.string()).optional(),
  cwd: z.string().optional(),
  terminal: z.boolean().optional(),
  user: z
    .union([
      z.string(),
      z.object({
        uid: z.number().int(),
        gid: z.number().int(),
        umask: z.number().int().optional(),
        additionalGids: z.array(z.number().int()).optional(),
      }),
    ])
    .optional(),
  consoleSize: z.object({ height: z.number().int(), width: z.number().int() }).optional(),
  // OCI process fields passed to the guest's crun as they are (added without a schema bump: all optional).
  capabilities: z.record(z.string(), z.array(z.string())).optional(),
  rlimits: z.array(z.object({ type: z.string(), hard: z.number(), soft: z.number() })).optional(),
  noNewPrivileges: z.boolean().optional(),
  oomScoreAdj: z.number().int().optional(),
});

/** One change to a guest's network: an interface, or routes to add or replace. */
const guestNetworkChange = z.object({
  interface: z
    .object({
      name: z.string(),
      /** Empty: the addresses were left as they were. */
      addresses: z.array(z.string()),
      mtu: z.number().int().optional(),
      mac: z.string().optional(),
      up: z.boolean().optional(),
    })
    .optional(),
  routes: z
    .array(
      z.object({
        dest: z.string(),
        gateway: z.string().optional(),
        device: z.string().optional(),
        source: z.string().optional(),
      }),
    )
    .optional(),
});

const resources = z.object({
  memoryLimitBytes: z.number().int().positive().optional(),
  cpuQuota: z.number().int().optional(),
  cpuPeriod: z.number().int().positive().optional(),
  pidsLimit: z.number().int().positive().optional(),
  cpuShares: z.number().int().positive().optional(),
  cpusetCpus: z.string().optional(),
  cpusetMems: z.string().optional(),
});

const empty = z.object({});
/**
 * The guest dropped output nobody read (the daemon was down longer than the guest's buffer lasted): `bytes` of
 * `stream` from stream offset `offset` are gone. Recorded when the daemon reconnects; the host log has a marker there.
 */
const outputDropped = z.object({
  stream: z.enum(['stdout', 'stderr']),
  bytes: z.number().int().positive(),
  offset: z.number().int().nonnegative(),
});
const failed = z.object({ error: failure });
const vmSize = z.object({
  vcpus: z.number().int().positive(),
  memoryMiB: z.number().int().positive(),
});
const exited = z.object({ ...exitFields, oomKilled: z.boolean() });

/** A VM template (issue 18): its id is the hash of what its saved state depends on (src/templates). */
const templateId = z.string().regex(/^[0-9a-f]{16}$/);

/** Data schemas of the sandbox stream (`sandbox-<id>`). */
const sandboxSchemas = {
  SandboxCreated: z.object({ sandboxId: entityId, config: sandboxConfig, incarnation }),
  /**
   * `template` (added later, optional: older records stay valid): the start restores the VM from this template
   * instead of booting it; absent, it boots cold.
   */
  SandboxStartRequested: z.object({
    template: z
      .object({
        id: templateId,
        stateFile: z.string(),
        imageVersion: z.string(),
        kernelParams: z.array(z.string()),
      })
      .optional(),
  }),
  /** launchVm restored the VM from a template (before VmLaunched): which one, and QEMU spawn + load times. */
  SandboxRestored: z.object({
    templateId,
    imageVersion: z.string(),
    launchMs: z.number().nonnegative(),
    restoreMs: z.number().nonnegative(),
  }),
  /** The restore failed (QEMU refused the state, the image changed, …): launchVm booted the VM cold instead. */
  SandboxRestoreFailed: z.object({ templateId, error: failure }),
  /**
   * A restored guest was given its own identity before anything of the sandbox ran in it (initGuest): each
   * step and its duration. `reseed`: host random bytes into the guest's pool; `clock`: the host's time;
   * `hostname`: the config's, set by CreateSandbox (the ms of that whole call, which also mounts the share).
   */
  SandboxIdentityRefreshed: z.object({
    steps: z.array(z.object({ step: z.enum(['reseed', 'clock', 'hostname']), ms: z.number().nonnegative() })),
  }),
  VmLaunched: z.object({ handle: vmHandle }),
  AgentConnected: z.object({ agentVersion: z.string() }),
  SandboxStarted: empty,
  SandboxStartFailed: failed,
  SandboxPauseRequested: empty,
  SandboxPaused: empty,
  SandboxPauseFailed: failed,
  SandboxResumeRequested: empty,
  SandboxResumed: empty,
  SandboxResumeFailed: failed,
  SandboxStopRequested: z.object({ timeoutMs: z.number().int().positive().optional() }),
  SandboxStopped: empty,
  SandboxStopFailed: failed,
  SandboxDeleteRequested: z.object({ force: z.boolean() }),
  SandboxDeleted: empty,
  SandboxDeleteFailed: failed,
  /** The VM ended while nobody asked (QMP SHUTDOWN, process gone). */
  VmExited: z.object({ reason: z.string() }),
  /** Recovery found the VM alive and its agent answering. */
  SandboxReattached: z.object({ handle: vmHandle }),
  /** Recovery (or a health check) found the VM gone or unreachable. */
  SandboxLost: z.object({ reason: z.string() }),
  /** sandbox.update asked the running VM to grow to these totals (before anything is hotplugged). */
  SandboxResizeRequested: vmSize,
  /**
   * The running VM's size changed: the new totals (outcome of SandboxResizeRequested — also when a later step
   * failed, so the log says what QEMU took — or recovery found QEMU bigger than the log said; older logs have
   * it alone). A VM launched again starts from the config's size.
   */
  SandboxResized: vmSize,
  /** The resize stopped short (a SandboxResized before it says what was taken); the VM runs on. */
  SandboxResizeFailed: failed,
  /**
   * A client changed the running guest's network (guest.updateInterface / guest.updateRoutes): what it asked,
   * for the audit trail. It lasts as long as this VM (a VM launched again starts from the config).
   */
  /**
   * launchVm wired the VM into its network namespace (before QEMU starts in it): each veth and the tap made
   * for it (with the veth's MAC, MTU and addresses, which the guest's NIC takes), and the namespace's routes.
   */
  SandboxNetworkAttached: z.object({
    wiring: z.object({
      path: z.string(),
      links: z.array(
        z.object({
          veth: z.string(),
          tap: z.string(),
          mac: z.string(),
          mtu: z.number().int(),
          addresses: z.array(z.string()),
        }),
      ),
      routes: z.array(
        z.object({
          dest: z.string(),
          gateway: z.string().optional(),
          device: z.string().optional(),
          source: z.string().optional(),
          family: z.union([z.literal(4), z.literal(6)]),
        }),
      ),
      // Added later (optional: older records stay valid): the namespace's /etc/netns/NAME/resolv.conf.
      dns: z
        .object({ servers: z.array(z.string()), searches: z.array(z.string()), options: z.array(z.string()) })
        .optional(),
    }),
  }),
  /** A client asked to change the guest's network (the intent; the updateGuestNetwork effect changes it). */
  GuestNetworkUpdateRequested: guestNetworkChange,
  /** The guest took the change (outcome of GuestNetworkUpdateRequested; older logs have it alone). */
  GuestNetworkUpdated: guestNetworkChange,
  GuestNetworkUpdateFailed: failed,
  ...networkSchemas,
  SandboxNetworkRefreshFailed: failed,
} as const;

/** Data schemas of the container stream (`container-<sandboxId>-<id>`). */
const containerSchemas = {
  ContainerCreateRequested: z.object({
    sandboxId: entityId,
    containerId: entityId,
    incarnation,
    sandboxIncarnation: incarnation,
    /** Host path of the OCI bundle as given by the client. */
    bundle: z.string(),
    /** The bundle's annotations and whether its process runs on a terminal (for views and outside tools). */
    annotations: z.record(z.string(), z.string()).optional(),
    terminal: z.boolean().optional(),
    process: processSpec.optional(),
    resources: resources.optional(),
    /** Host paths bound into the container (through the sandbox share). */
    mounts: z
      .array(z.object({ source: z.string(), destination: z.string(), readonly: z.boolean().optional() }))
      .optional(),
  }),
  ContainerCreated: z.object({
    pid: z.number().int().nonnegative(),
    /** The host CPUs this container asked for (its bundle's cpu.cpus or the create's cpusetCpus). */
    cpusetCpus: z.string().optional(),
    /** The host CPUs the sandbox's vCPUs were pinned to after this create (the union over its containers). */
    vcpusPinnedTo: z.string().optional(),
  }),
  ContainerCreateFailed: failed,
  ContainerStartRequested: empty,
  ContainerStarted: empty,
  ContainerStartFailed: failed,
  ContainerPauseRequested: empty,
  ContainerPaused: empty,
  ContainerPauseFailed: failed,
  ContainerResumeRequested: empty,
  ContainerResumed: empty,
  ContainerResumeFailed: failed,
  /** A client asked for new resources (the intent; the guest is changed by the updateContainer effect). */
  ContainerUpdateRequested: z.object({ resources }),
  /** The guest applied the resources (outcome of ContainerUpdateRequested; older logs have it alone). */
  ContainerUpdated: z.object({ resources, vcpusPinnedTo: z.string().optional() }),
  ContainerUpdateFailed: failed,
  /** The guest's cgroup reported an OOM kill in this container (the shim's TaskOOM). */
  ContainerOomKilled: empty,
  /** The init process ended (the shim's TaskExit). Schema 2 added `oomKilled`. */
  ContainerExited: exited,
  /** Recovery found the init process ended while the daemon was down. */
  ContainerExitedWhileDown: exited,
  /** The container vanished with its VM, or the agent no longer knows it. */
  ContainerLost: z.object({ reason: z.string() }),
  ContainerOutputDropped: outputDropped,
  ContainerDeleteRequested: z.object({ force: z.boolean() }),
  /** vcpusPinnedTo: the host CPUs the VM was left pinned to, when this container's cpuset left the union. */
  ContainerDeleted: z.object({ vcpusPinnedTo: z.string().optional() }),
  ContainerDeleteFailed: failed,
} as const;

const execRequest = z.object({
  sandboxId: entityId,
  containerId: entityId,
  execId: entityId,
  incarnation,
  sandboxIncarnation: incarnation,
  containerIncarnation: incarnation,
  process: processSpec,
});

/** Data schemas of the exec stream (`exec-<sandboxId>-<containerId>-<execId>`). */
const execSchemas = {
  ExecRequested: execRequest,
  /** Registered, not started (containerd's Exec before its Start): ExecStartRequested starts it. */
  ExecCreated: execRequest,
  ExecStartRequested: empty,
  ExecStarted: z.object({ pid: z.number().int().nonnegative() }),
  ExecStartFailed: failed,
  ProcessExited: z.object({ ...exitFields, oomKilled: z.boolean().optional() }),
  ProcessExitedWhileDaemonDown: z.object({ ...exitFields, oomKilled: z.boolean().optional() }),
  ProcessLost: z.object({ reason: z.string() }),
  ProcessOutputDropped: outputDropped,
  /** Its record removed by a client (exec.delete): the id may be used again. */
  ExecDeleted: empty,
} as const;

type DataOf<M extends Record<string, z.ZodType>> = { [K in keyof M]: z.infer<M[K]> };
type UnionOf<M extends Record<string, z.ZodType>> = {
  [K in keyof M & string]: Readonly<{ type: K; data: DataOf<M>[K] }>;
}[keyof M & string];

export type SandboxEventData = DataOf<typeof sandboxSchemas>;
export type ContainerEventData = DataOf<typeof containerSchemas>;
export type ExecEventData = DataOf<typeof execSchemas>;

/** Every fact of a sandbox's life, discriminated on `type`. */
export type SandboxEvent = UnionOf<typeof sandboxSchemas>;
/** Every fact of a container's life. */
export type ContainerEvent = UnionOf<typeof containerSchemas>;
/** Every fact of an exec'd process's life. */
export type ExecEvent = UnionOf<typeof execSchemas>;
export type DomainEvent = SandboxEvent | ContainerEvent | ExecEvent;
export type DomainEventType = DomainEvent['type'];
export type FailureData = z.infer<typeof failure>;

export type EntityKind = 'sandbox' | 'container' | 'exec';

export const sandboxEventTypes = Object.keys(sandboxSchemas) as SandboxEvent['type'][];
export const containerEventTypes = Object.keys(containerSchemas) as ContainerEvent['type'][];
export const execEventTypes = Object.keys(execSchemas) as ExecEvent['type'][];

/** Which entity a known event type belongs to (undefined for a type outside the catalogue). */
export function entityOfEventType(type: string): EntityKind | undefined {
  if (Object.hasOwn(sandboxSchemas, type)) return 'sandbox';
  if (Object.hasOwn(containerSchemas, type)) return 'container';
  if (Object.hasOwn(execSchemas, type)) return 'exec';
  return undefined;
}

/** Upcasters per type: `[n]` lifts schema n to n + 1. */
const upcasters: Partial<Record<DomainEventType, Record<number, Upcaster>>> = {
  // Schema 1 of ContainerExited had no `oomKilled`: an exit recorded then was not known to be an OOM kill.
  ContainerExited: {
    1: (data) => ({ ...(data as object), oomKilled: false }),
  },
};

function validatorOf<S extends z.ZodType>(type: string, schema: S): (data: unknown) => z.infer<S> {
  return (data) => {
    const parsed = schema.safeParse(data);
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0];
    const path = issue?.path.length ? `data.${issue.path.join('.')}` : 'data';
    throw new InvalidArgument(path, `${type}: ${issue?.message ?? 'invalid'}`);
  };
}

function definitionsOf(schemas: Record<string, z.ZodType>): EventTypeDefinition[] {
  return Object.entries(schemas).map(([type, schema]) => {
    const ups = upcasters[type as DomainEventType];
    const current = ups ? Math.max(...Object.keys(ups).map(Number)) + 1 : 1;
    const def: EventTypeDefinition = { type, schema: current, validate: validatorOf(type, schema) };
    return ups ? { ...def, upcasters: ups } : def;
  });
}

/** The registry holding every type of the catalogue; the store validates appends and upcasts reads with it. */
export const eventRegistry: EventRegistry = new EventRegistry().register(
  ...definitionsOf(sandboxSchemas),
  ...definitionsOf(containerSchemas),
  ...definitionsOf(execSchemas),
);
