// An OCI bundle's spec translated for a container that runs in a VM: pure (spec in → guest spec + host work out).
//
// The host keeps what only the host can do (bind sources, hooks that run in the runtime namespace); the guest's
// crun gets a spec whose every path means something inside the VM. Kata's constraintGRPCSpec does the same job;
// the rules, and which fields are kept, dropped or refused, are listed in docs/oci.md.
import { isAbsolute, normalize, resolve } from 'node:path';
import { InvalidArgument } from '../errors/index.js';
import { checkCpuList } from './cpus.js';
import {
  GUEST_HOOK_PHASES,
  HOST_HOOK_PHASES,
  type HostHookPhase,
  type OciHook,
  type OciMount,
  type OciNamespace,
  type OciSpec,
} from './spec.js';

/** A host path the container sees at `destination`: bound into the sandbox share, then by crun in the guest. */
export interface HostBind {
  readonly source: string;
  readonly destination: string;
  readonly readonly: boolean;
}

/** Something the translation changed or dropped that a user may want to know about (logged, never fatal). */
export interface TranslationNote {
  readonly field: string;
  readonly message: string;
}

export interface GuestTranslation {
  /**
   * The spec for crun in the guest. `root.path` is `rootfs` (the host binds the rootfs there, next to this
   * config.json); `mounts[i].source` of a host bind is a placeholder the host fills with the bind's share path
   * (see `bindSourcePlaceholder`); hooks that run on the host are gone, so none runs twice.
   */
  readonly guestSpec: OciSpec;
  /** Absolute host path of the rootfs (root.path resolved against the bundle). */
  readonly rootfs: string;
  readonly readonlyRootfs: boolean;
  /** Host binds, in the order of their placeholders in guestSpec.mounts. */
  readonly binds: readonly HostBind[];
  /** Hooks the host runs itself, per phase, in the order the spec lists them. */
  readonly hostHooks: Readonly<Partial<Record<HostHookPhase, readonly OciHook[]>>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly notes: readonly TranslationNote[];
  /**
   * linux.resources.cpu.cpus / .mems: host CPU and memory-node ids, which mean nothing in the guest (crun there
   * would refuse ids the VM lacks). The host pins the sandbox's vCPUs to them instead, as Kata does.
   */
  readonly hostCpuset?: { readonly cpus?: string; readonly mems?: string };
}

/** The placeholder source of host bind number `index` in guestSpec.mounts (replaced before the guest reads it). */
export function bindSourcePlaceholder(index: number): string {
  return `sandboxd-bind:${index}`;
}

/** Filesystems the guest kernel provides itself: crun mounts them in the guest as the spec says. */
const GUEST_FS_TYPES = new Set([
  'proc',
  'sysfs',
  'devpts',
  'mqueue',
  'tmpfs',
  'cgroup',
  'cgroup2',
  'devtmpfs',
  'securityfs',
  'debugfs',
  'tracefs',
  'hugetlbfs',
  'binfmt_misc',
  'configfs',
  'fusectl',
  'pstore',
  'bpf',
]);

/** Resource members that are cgroup v1 only or host-only: the guest's cgroup v2 cannot apply them. */
const DROPPED_RESOURCES = ['network', 'blockIO.weightDevice', 'kernelMemory', 'kernelTCP'] as const;

/** linux.* members with no meaning in the guest, dropped with a note (the spec lets a runtime ignore them). */
const DROPPED_LINUX = ['mountLabel', 'intelRdt', 'rootfsPropagation'] as const;

/** The /dev/shm size Docker and containerd default to when the bundle's own shm is a host bind. */
const DEFAULT_SHM = ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'];

const isBind = (m: OciMount): boolean =>
  m.type === 'bind' ||
  ((m.type === undefined || m.type === 'none' || m.type === '') &&
    (m.options ?? []).some((o) => o === 'bind' || o === 'rbind'));

function stringArray(value: unknown, field: string): readonly string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new InvalidArgument(field, 'must be an array of strings');
  }
  return value;
}

function checkHook(hook: unknown, field: string): OciHook {
  if (typeof hook !== 'object' || hook === null || Array.isArray(hook)) {
    throw new InvalidArgument(field, 'must be an object with a path');
  }
  const h = hook as Record<string, unknown>;
  if (typeof h.path !== 'string' || h.path === '') throw new InvalidArgument(`${field}.path`, 'is required');
  if (!isAbsolute(h.path)) {
    throw new InvalidArgument(`${field}.path`, `must be an absolute path (runtime-spec), got ${h.path}`);
  }
  const args = stringArray(h.args, `${field}.args`);
  const env = stringArray(h.env, `${field}.env`);
  if (h.timeout !== undefined && !(Number.isInteger(h.timeout) && (h.timeout as number) > 0)) {
    throw new InvalidArgument(`${field}.timeout`, 'must be a positive integer (seconds)');
  }
  return {
    path: h.path,
    ...(args ? { args } : {}),
    ...(env ? { env } : {}),
    ...(h.timeout !== undefined ? { timeout: h.timeout as number } : {}),
  };
}

function hooksOf(spec: OciSpec, field: string, notes: TranslationNote[]) {
  const host: Partial<Record<HostHookPhase, OciHook[]>> = {};
  const guest: Record<string, OciHook[]> = {};
  const hooks = spec.hooks;
  if (hooks === undefined) return { host, guest: undefined };
  if (typeof hooks !== 'object' || hooks === null || Array.isArray(hooks)) {
    throw new InvalidArgument(`${field}.hooks`, 'must be an object');
  }
  for (const [phase, list] of Object.entries(hooks)) {
    const where = `${field}.hooks.${phase}`;
    if (!Array.isArray(list)) throw new InvalidArgument(where, 'must be an array of hooks');
    const checked = list.map((h, i) => checkHook(h, `${where}[${i}]`));
    if ((HOST_HOOK_PHASES as readonly string[]).includes(phase)) host[phase as HostHookPhase] = checked;
    else if ((GUEST_HOOK_PHASES as readonly string[]).includes(phase)) guest[phase] = checked;
    else notes.push({ field: where, message: 'unknown hook phase: ignored' });
  }
  return { host, guest: Object.keys(guest).length > 0 ? guest : undefined };
}

function namespacesOf(
  namespaces: unknown,
  field: string,
  notes: TranslationNote[],
): OciNamespace[] | undefined {
  if (namespaces === undefined) return undefined;
  if (!Array.isArray(namespaces)) throw new InvalidArgument(field, 'must be an array');
  const out: OciNamespace[] = [];
  for (const [i, ns] of namespaces.entries()) {
    if (typeof ns !== 'object' || ns === null || typeof (ns as OciNamespace).type !== 'string') {
      throw new InvalidArgument(`${field}[${i}].type`, 'is required');
    }
    const { type, path } = ns as OciNamespace;
    // The container lives on the VM's network (its NIC, or loopback): an empty netns would cut it off.
    if (type === 'network') {
      notes.push({
        field: `${field}[${i}]`,
        message: 'network namespace: the container joins the VM network',
      });
      continue;
    }
    // A host namespace path names nothing in the guest: the container gets a new one (pid sharing is the guest's).
    if (path !== undefined && path !== '') {
      notes.push({
        field: `${field}[${i}].path`,
        message: `host path ${path} dropped: a new ${type} namespace`,
      });
    }
    out.push({ type });
  }
  return out;
}

function mountsOf(spec: OciSpec, bundleDir: string, field: string, notes: TranslationNote[]) {
  const mounts = spec.mounts;
  if (mounts === undefined) return { mounts: undefined, binds: [] as HostBind[] };
  if (!Array.isArray(mounts)) throw new InvalidArgument(`${field}.mounts`, 'must be an array');
  const binds: HostBind[] = [];
  const out: OciMount[] = [];
  for (const [i, raw] of mounts.entries()) {
    const where = `${field}.mounts[${i}]`;
    if (typeof raw !== 'object' || raw === null) throw new InvalidArgument(where, 'must be an object');
    const m = raw as OciMount;
    if (typeof m.destination !== 'string' || !isAbsolute(m.destination)) {
      throw new InvalidArgument(`${where}.destination`, 'must be an absolute path');
    }
    const options = stringArray(m.options, `${where}.options`) ?? [];
    if (isBind(m)) {
      if (typeof m.source !== 'string' || m.source === '') {
        throw new InvalidArgument(`${where}.source`, 'is required for a bind mount');
      }
      // A host /dev/shm (CRI's pod shm) cannot be shared into a VM usefully: the guest gets its own tmpfs.
      if (normalize(m.destination) === '/dev/shm') {
        out.push({ destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: DEFAULT_SHM });
        notes.push({ field: where, message: 'host /dev/shm bind replaced by a tmpfs in the guest' });
        continue;
      }
      const source = resolve(bundleDir, m.source);
      const readonly = options.includes('ro');
      out.push({ ...m, source: bindSourcePlaceholder(binds.length), options });
      binds.push({ source, destination: m.destination, readonly });
      continue;
    }
    const type = m.type ?? '';
    if (!GUEST_FS_TYPES.has(type)) {
      throw new InvalidArgument(
        `${where}.type`,
        `${JSON.stringify(type)} cannot be mounted in a VM (kernel filesystems and binds only)`,
      );
    }
    out.push(m);
  }
  return { mounts: out, binds };
}

function without<T extends Record<string, unknown>>(
  value: T,
  keys: readonly string[],
  field: string,
  notes: TranslationNote[],
): T {
  const copy: Record<string, unknown> = { ...value };
  for (const key of keys) {
    const [head, tail] = key.split('.') as [string, string | undefined];
    if (tail === undefined) {
      if (copy[head] === undefined) continue;
      delete copy[head];
    } else {
      const inner = copy[head];
      if (
        typeof inner !== 'object' ||
        inner === null ||
        (inner as Record<string, unknown>)[tail] === undefined
      )
        continue;
      const rest = { ...(inner as Record<string, unknown>) };
      delete rest[tail];
      copy[head] = rest;
    }
    notes.push({ field: `${field}.${key}`, message: 'not applicable in the guest: ignored' });
  }
  return copy as T;
}

/**
 * Translates a bundle's spec (already parsed and checked by `loadBundle`) for the guest. Pure: reads nothing,
 * changes nothing. Throws InvalidArgument naming `<field>.<member>` for what cannot run in a VM.
 */
export function translateForGuest(
  spec: OciSpec,
  bundleDir: string,
  field = 'bundle.config.json',
): GuestTranslation {
  const notes: TranslationNote[] = [];
  const rootfs = resolve(bundleDir, spec.root.path);
  const { host, guest } = hooksOf(spec, field, notes);
  const { mounts, binds } = mountsOf(spec, bundleDir, field, notes);

  let linux = spec.linux;
  let hostCpuset: { cpus?: string; mems?: string } | undefined;
  if (linux !== undefined) {
    if (typeof linux !== 'object' || linux === null)
      throw new InvalidArgument(`${field}.linux`, 'must be an object');
    const namespaces = namespacesOf(linux.namespaces, `${field}.linux.namespaces`, notes);
    linux = without({ ...linux }, DROPPED_LINUX, `${field}.linux`, notes);
    if (namespaces) linux = { ...linux, namespaces };
    // net.* sysctls need a network namespace of the container's own, and it shares the VM's: crun would refuse.
    const sysctl = (linux as { sysctl?: Record<string, string> }).sysctl;
    if (sysctl && typeof sysctl === 'object') {
      const kept = Object.fromEntries(Object.entries(sysctl).filter(([k]) => !k.startsWith('net.')));
      for (const k of Object.keys(sysctl).filter((k) => k.startsWith('net.'))) {
        notes.push({
          field: `${field}.linux.sysctl.${k}`,
          message: 'needs a network namespace of its own: ignored',
        });
      }
      linux = { ...linux, sysctl: kept } as typeof linux;
    }
    // The guest places every container in its own cgroup tree; a host path means nothing there.
    if (linux.cgroupsPath !== undefined) {
      const { cgroupsPath: _, ...rest } = linux;
      linux = rest;
    }
    if (linux.resources !== undefined) {
      const resources = without({ ...linux.resources }, DROPPED_RESOURCES, `${field}.linux.resources`, notes);
      const cpu = resources.cpu as Record<string, unknown> | undefined;
      if (cpu && (cpu.cpus !== undefined || cpu.mems !== undefined)) {
        const { cpus, mems, ...rest } = cpu;
        hostCpuset = {
          ...(typeof cpus === 'string' && cpus !== ''
            ? { cpus: checkCpuList(cpus, `${field}.linux.resources.cpu.cpus`) }
            : {}),
          ...(typeof mems === 'string' && mems !== ''
            ? { mems: checkCpuList(mems, `${field}.linux.resources.cpu.mems`) }
            : {}),
        };
        resources.cpu = rest;
      }
      linux = { ...linux, resources };
    }
  }
  let process = spec.process;
  if (process !== undefined) {
    // Neither AppArmor nor SELinux runs in the guest; runc, too, skips a profile the kernel cannot enforce.
    process = without({ ...process }, ['apparmorProfile', 'selinuxLabel'], `${field}.process`, notes);
  }

  const { hooks: _hooks, mounts: _mounts, linux: _linux, process: _process, root: _root, ...rest } = spec;
  const guestSpec: OciSpec = {
    ...rest,
    root: { path: 'rootfs', ...(spec.root.readonly ? { readonly: true } : {}) },
    ...(process ? { process } : {}),
    ...(mounts ? { mounts } : {}),
    ...(guest ? { hooks: guest } : {}),
    ...(linux ? { linux } : {}),
  };
  return {
    guestSpec,
    rootfs,
    readonlyRootfs: spec.root.readonly === true,
    binds,
    hostHooks: host,
    annotations: spec.annotations ?? {},
    notes,
    ...(hostCpuset && Object.keys(hostCpuset).length > 0 ? { hostCpuset } : {}),
  };
}
