// An OCI `process` (from a bundle's config.json, containerd's exec spec, runc's --process file) as the
// process sandboxd's API takes: the same fields under the API's names, nothing dropped that crun applies.
import type { OciProcess } from './spec.js';

/** The API's process (exec.create / exec.start / container.create `process`) for an OCI process. */
export interface ApiProcess {
  args: string[];
  env?: string[];
  cwd?: string;
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  /** OCI's numeric user as it is ({uid, gid, umask?, additionalGids?}), or "uid[:gid]" / "name[:group]". */
  user?: string | { uid: number; gid: number; umask?: number; additionalGids?: number[] };
  capabilities?: Record<string, string[]>;
  rlimits?: { type: string; hard: number; soft: number }[];
  noNewPrivileges?: boolean;
  oomScoreAdj?: number;
}

/**
 * The OCI members copied as they are (the API validates them: a bad one is refused naming its field). Not
 * apparmorProfile / selinuxLabel: neither runs in the guest, and the bundle translation drops them as well.
 */
const PASSED_AS_THEY_ARE = ['capabilities', 'rlimits', 'noNewPrivileges', 'oomScoreAdj'] as const;

/**
 * The API process for `p`; `args` must be there (callers say which field was missing). A console size is kept
 * only for a terminal, and only when both sides are set (containerd sends 0×0 for "none").
 */
export function apiProcessOf(p: OciProcess & { args: readonly string[] }): ApiProcess {
  const out: ApiProcess = { args: [...p.args] };
  if (p.env && p.env.length > 0) out.env = [...p.env];
  if (p.cwd) out.cwd = p.cwd;
  if (p.terminal) out.terminal = true;
  if (p.terminal && p.consoleSize?.height && p.consoleSize.width)
    out.consoleSize = { height: p.consoleSize.height, width: p.consoleSize.width };
  if (p.user && typeof p.user.uid === 'number') {
    const u = p.user as { uid: number; gid?: number; umask?: number; additionalGids?: number[] };
    out.user = {
      uid: u.uid,
      gid: u.gid ?? 0,
      ...(u.umask === undefined ? {} : { umask: u.umask }),
      ...(u.additionalGids && u.additionalGids.length > 0 ? { additionalGids: [...u.additionalGids] } : {}),
    };
  }
  const extras = out as unknown as Record<string, unknown>;
  for (const key of PASSED_AS_THEY_ARE) if (p[key] !== undefined && p[key] !== null) extras[key] = p[key];
  return out;
}
