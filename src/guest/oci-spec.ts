// The OCI config crun is given in the guest: the bundle's config.json read and made absolute, the host's process
// override and resources merged in, signals and exit statuses in crun's terms. Pure but for reading the bundle.
import { readFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import type { WireProcessSpec, WireResources } from '../agent/index.js';
import { InvalidArgument } from '../errors/index.js';
import type { GuestExitStatus } from './events.js';
import { resolveUser } from './users.js';

export interface OciProcess {
  terminal?: boolean;
  consoleSize?: { height?: number; width?: number };
  user?: { uid: number; gid: number; additionalGids?: number[] };
  args?: string[];
  env?: string[];
  cwd?: string;
  [key: string]: unknown;
}
export interface OciSpec {
  process?: OciProcess;
  root?: { path: string; readonly?: boolean };
  hooks?: Record<string, unknown[]>;
  linux?: { cgroupsPath?: string; resources?: Record<string, unknown>; [key: string]: unknown };
  [key: string]: unknown;
}
export type OciLinux = NonNullable<OciSpec['linux']>;

/** A terminal's size when the request names none: the VT100's. A pty starts at 0×0, which programs take badly. */
const defaultConsoleSize = { height: 24, width: 80 };

/** The size asked for (wire fields, 0 = unset), else the one the bundle gives, else the default. */
export function consoleSizeOf(
  height: number,
  width: number,
  fallback: OciProcess['consoleSize'],
): { height: number; width: number } {
  if (height > 0 && width > 0) return { height, width };
  if (fallback?.height && fallback.width && fallback.height > 0 && fallback.width > 0) {
    return { height: fallback.height, width: fallback.width };
  }
  return defaultConsoleSize;
}

/**
 * The bundle's config.json with root.path and relative bind sources made absolute (crun is given the config from
 * elsewhere) and the host's process override applied; refused without a root or a program.
 */
export async function readBundleSpec(
  bundleDir: string,
  bundle: string,
  processOverride: WireProcessSpec | null,
): Promise<OciSpec & { root: { path: string }; process: OciProcess }> {
  let spec: OciSpec;
  try {
    spec = JSON.parse(await readFile(join(bundleDir, 'config.json'), 'utf8')) as OciSpec;
  } catch (err) {
    throw new InvalidArgument('bundle', `cannot read ${bundle}/config.json: ${(err as Error).message}`);
  }
  if (typeof spec !== 'object' || spec === null || typeof spec.root?.path !== 'string') {
    throw new InvalidArgument('bundle', 'config.json has no root.path');
  }
  spec.root.path = resolve(bundleDir, spec.root.path);
  resolveBindSources(spec, bundleDir);
  spec.process ??= {};
  const rootfs = spec.root.path;
  if (processOverride) {
    if (processOverride.args.length > 0) spec.process.args = processOverride.args;
    if (processOverride.env.length > 0) spec.process.env = processOverride.env;
    if (processOverride.cwd !== '') spec.process.cwd = processOverride.cwd;
    Object.assign(spec.process, ociExtrasOf(processOverride.ociJson ?? ''));
    spec.process.terminal = processOverride.terminal;
    spec.process.consoleSize = consoleSizeOf(
      processOverride.consoleHeight,
      processOverride.consoleWidth,
      spec.process.consoleSize,
    );
    if (processOverride.user !== '') spec.process.user = await resolveUser(rootfs, processOverride.user);
  }
  if (spec.process.terminal) spec.process.consoleSize = consoleSizeOf(0, 0, spec.process.consoleSize);
  if (!Array.isArray(spec.process.args) || spec.process.args.length === 0) {
    throw new InvalidArgument('process.args', 'must not be empty');
  }
  return spec as OciSpec & { root: { path: string }; process: OciProcess };
}

/** An exec's OCI process: the container's own, with what the exec request names in its place. */
export async function execProcessOf(container: OciSpec, spec: WireProcessSpec): Promise<OciProcess> {
  const base = container.process ?? {};
  const extras = ociExtrasOf(spec.ociJson ?? '');
  return {
    ...base,
    ...extras,
    terminal: spec.terminal,
    consoleSize: consoleSizeOf(spec.consoleHeight, spec.consoleWidth, base.consoleSize),
    args: spec.args,
    env: spec.env.length > 0 ? spec.env : (base.env ?? []),
    cwd: spec.cwd !== '' ? spec.cwd : (base.cwd ?? '/'),
    user:
      spec.user !== ''
        ? await resolveUser(container.root!.path, spec.user)
        : (extras.user ?? base.user ?? { uid: 0, gid: 0 }),
  };
}

/**
 * OCI lets a bind mount's source be relative to the bundle (the host binds volumes beside the bundle and names
 * them so); crun is given the config from elsewhere, so relative sources are made absolute here.
 */
function resolveBindSources(spec: OciSpec, bundleDir: string): void {
  if (!Array.isArray(spec.mounts)) return;
  for (const m of spec.mounts as { type?: unknown; source?: unknown; options?: unknown }[]) {
    const bind =
      m.type === 'bind' || (Array.isArray(m.options) && m.options.some((o) => o === 'bind' || o === 'rbind'));
    if (bind && typeof m.source === 'string' && !isAbsolute(m.source))
      m.source = resolve(bundleDir, m.source);
  }
}

/** Binds the guest's `path` read-only at the same place in the container, unless the bundle mounts something there. */
export function addSandboxMount(spec: OciSpec, path: string): void {
  const mounts = Array.isArray(spec.mounts) ? (spec.mounts as { destination?: unknown }[]) : [];
  if (mounts.some((m) => m.destination === path)) return;
  spec.mounts = [...mounts, { destination: path, type: 'bind', source: path, options: ['rbind', 'ro'] }];
}

/**
 * The createRuntime hook that is the start gate: it writes crun's state (the pid) to `stateFile`, blocks reading
 * `gate` until StartContainer writes a line, then marks `startedFile`.
 */
export function addStartGate(
  spec: OciSpec,
  shell: string,
  stateFile: string,
  gate: string,
  startedFile: string,
) {
  spec.hooks ??= {};
  const gateHook = {
    path: shell,
    args: [
      'sh',
      '-c',
      'cat > "$1.tmp" && mv "$1.tmp" "$1" && read -r _ < "$2" && : > "$3"',
      'sandboxd-start-gate',
      stateFile,
      gate,
      startedFile,
    ],
  };
  spec.hooks.createRuntime = [...(spec.hooks.createRuntime ?? []), gateHook];
}

/** OCI process fields a client sent beyond the agent's own (ProcessSpec.oci_json), for crun as they are. */
const OCI_EXTRA_KEYS = ['capabilities', 'rlimits', 'noNewPrivileges', 'oomScoreAdj', 'user'] as const;

function ociExtrasOf(json: string): Partial<OciProcess> {
  if (json === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new InvalidArgument('process', 'oci_json is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null)
    throw new InvalidArgument('process', 'oci_json is not an object');
  const extras: Record<string, unknown> = {};
  for (const key of OCI_EXTRA_KEYS) {
    const value = (parsed as Record<string, unknown>)[key];
    if (value !== undefined) extras[key] = value;
  }
  const user = extras.user as { uid?: unknown; gid?: unknown } | undefined;
  if (user && !(Number.isInteger(user.uid) && Number.isInteger(user.gid))) {
    throw new InvalidArgument('process.user', 'must have integer uid and gid');
  }
  return extras as Partial<OciProcess>;
}

export function applySpecResources(linux: OciLinux, resources: WireResources): void {
  linux.resources ??= {};
  const specResources = linux.resources;
  if (resources.memoryLimitBytes > 0) {
    specResources.memory = {
      ...(specResources.memory as object | undefined),
      limit: resources.memoryLimitBytes,
    };
  }
  if (resources.cpuQuota !== 0 || resources.cpuPeriod !== 0 || resources.cpuShares !== 0) {
    const cpu: Record<string, number> = { ...(specResources.cpu as object | undefined) };
    if (resources.cpuQuota !== 0) cpu.quota = resources.cpuQuota;
    if (resources.cpuPeriod !== 0) cpu.period = resources.cpuPeriod;
    if (resources.cpuShares !== 0) cpu.shares = resources.cpuShares;
    specResources.cpu = cpu;
  }
  if (resources.pidsLimit > 0) specResources.pids = { limit: resources.pidsLimit };
}

export function signalNumber(signal: string): number {
  const trimmed = signal.trim().toUpperCase();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const name = (trimmed.startsWith('SIG') ? trimmed : `SIG${trimmed}`) as keyof typeof osConstants.signals;
  const value = osConstants.signals[name];
  if (value === undefined) throw new InvalidArgument('signal', `unknown signal ${JSON.stringify(signal)}`);
  return value;
}

function signalName(n: number): string {
  for (const [name, value] of Object.entries(osConstants.signals)) if (value === n) return name;
  return String(n);
}

/** crun run/exec exit with the process's code, or 128+n when a signal killed it (like a shell). */
export function exitStatusOf(code: number | null, signal: NodeJS.Signals | null): GuestExitStatus {
  if (signal) return { exitCode: 128 + (osConstants.signals[signal] ?? 0), signal, oomKilled: false };
  const exitCode = code ?? 255;
  const killedBy = exitCode > 128 && exitCode <= 128 + 64 ? signalName(exitCode - 128) : '';
  return { exitCode, signal: killedBy, oomKilled: false };
}

/**
 * The exit code a shell gives a program it could not run, from crun's own words: 127 for a command not found,
 * 126 for one that is not executable (as docker and podman report them); undefined when the program ran.
 */
export function notRunExitCode(crunOutput: string): 126 | 127 | undefined {
  if (/executable file `[^`]*` not found in \$PATH/.test(crunOutput)) return 127;
  if (/open executable: /.test(crunOutput)) return 126;
  return undefined;
}
