// The OCI runtime spec as sandboxd reads it: the members it acts on, typed; everything else passed through.
// Changing what is accepted here changes what every client (API, shim, OCI CLI) may send: say so in docs/oci.md.

/** One entry of `hooks.<phase>` (runtime-spec config.md "POSIX-platform Hooks"). */
export interface OciHook {
  readonly path: string;
  readonly args?: readonly string[];
  readonly env?: readonly string[];
  /** Seconds; the hook is killed and fails when it runs longer. */
  readonly timeout?: number;
}

export const HOST_HOOK_PHASES = ['prestart', 'createRuntime', 'poststart', 'poststop'] as const;
export const GUEST_HOOK_PHASES = ['createContainer', 'startContainer'] as const;
export type HostHookPhase = (typeof HOST_HOOK_PHASES)[number];
export type GuestHookPhase = (typeof GUEST_HOOK_PHASES)[number];
export type OciHooks = Partial<Record<HostHookPhase | GuestHookPhase, readonly OciHook[]>>;

export interface OciMount {
  readonly destination: string;
  readonly type?: string;
  readonly source?: string;
  readonly options?: readonly string[];
  readonly [other: string]: unknown;
}

export interface OciNamespace {
  readonly type: string;
  readonly path?: string;
}

export interface OciProcess {
  readonly args?: readonly string[];
  readonly env?: readonly string[];
  readonly cwd?: string;
  readonly terminal?: boolean;
  readonly consoleSize?: { readonly height: number; readonly width: number };
  readonly user?: { readonly uid: number; readonly gid: number; readonly [other: string]: unknown };
  readonly [other: string]: unknown;
}

export interface OciLinux {
  readonly namespaces?: readonly OciNamespace[];
  readonly resources?: Readonly<Record<string, unknown>>;
  readonly cgroupsPath?: string;
  readonly [other: string]: unknown;
}

/** A parsed config.json. Members sandboxd does not act on are kept as they came. */
export interface OciSpec {
  readonly ociVersion: string;
  readonly root: { readonly path: string; readonly readonly?: boolean };
  readonly process?: OciProcess;
  readonly hostname?: string;
  readonly mounts?: readonly OciMount[];
  readonly hooks?: OciHooks;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly linux?: OciLinux;
  readonly [other: string]: unknown;
}

/** The runtime-spec versions whose config.json sandboxd understands: 1.0.0 up to 1.2.x (what runc 1.1 and crun 1.8 take). */
export const SUPPORTED_OCI_VERSIONS = /^1\.(0|1|2)\.\d+(-[0-9A-Za-z.+-]+)?(\+[0-9A-Za-z.-]+)?$/;
