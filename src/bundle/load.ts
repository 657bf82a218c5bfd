// Reading an OCI bundle: the checks before a container is created (Kata's oci.go validCreateParams, plus a
// config.json that parses and a runtime-spec version sandboxd understands).
import { readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgument } from '../errors/index.js';
import { type OciSpec, SUPPORTED_OCI_VERSIONS } from './spec.js';

/** What a bundle's config.json must at least say for sandboxd to run it. */
export interface BundleSummary {
  /** The bundle path with symlinks resolved (what the runtime gets). */
  readonly path: string;
  readonly ociVersion: string;
  readonly rootPath: string;
  readonly args?: readonly string[];
  /** The parsed config.json (checked only as far as the members above; translateForGuest checks the rest). */
  readonly spec: OciSpec;
}

/**
 * Checks that `bundle` (already an absolute, normalised path) is an existing directory holding a
 * config.json that parses as an OCI runtime spec with `ociVersion` and `root.path`, and that the
 * root exists. Throws InvalidArgument naming `field` (and the config.json member when that is wrong).
 */
export async function validateBundle(bundle: string, field = 'bundle'): Promise<BundleSummary> {
  const info = await stat(bundle).catch((err: NodeJS.ErrnoException) => {
    throw new InvalidArgument(
      field,
      `invalid bundle path ${JSON.stringify(bundle)}: ${err.code ?? err.message}`,
    );
  });
  if (!info.isDirectory()) {
    throw new InvalidArgument(
      field,
      `invalid bundle path ${JSON.stringify(bundle)}: it should be a directory`,
    );
  }
  const resolved = await realpath(bundle);
  const configPath = join(resolved, 'config.json');
  let text: string;
  try {
    text = await readFile(configPath, 'utf8');
  } catch (err) {
    throw new InvalidArgument(
      field,
      `no readable config.json in ${bundle}: ${(err as NodeJS.ErrnoException).code}`,
    );
  }
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgument(`${field}.config.json`, `not valid JSON: ${(err as Error).message}`);
  }
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw new InvalidArgument(`${field}.config.json`, 'must be a JSON object (an OCI runtime spec)');
  }
  const s = spec as { ociVersion?: unknown; root?: { path?: unknown }; process?: { args?: unknown } };
  if (typeof s.ociVersion !== 'string' || s.ociVersion === '') {
    throw new InvalidArgument(`${field}.config.json.ociVersion`, 'must be a non-empty string');
  }
  if (!SUPPORTED_OCI_VERSIONS.test(s.ociVersion)) {
    throw new InvalidArgument(
      `${field}.config.json.ociVersion`,
      `unsupported runtime-spec version ${JSON.stringify(s.ociVersion)} (1.0.0 to 1.2.x are)`,
    );
  }
  if (
    typeof s.root !== 'object' ||
    s.root === null ||
    typeof s.root.path !== 'string' ||
    s.root.path === ''
  ) {
    throw new InvalidArgument(`${field}.config.json.root.path`, 'must be a non-empty string');
  }
  const rootPath = s.root.path.startsWith('/') ? s.root.path : join(resolved, s.root.path);
  const rootInfo = await stat(rootPath).catch(() => undefined);
  if (!rootInfo?.isDirectory()) {
    throw new InvalidArgument(
      `${field}.config.json.root.path`,
      `root filesystem ${rootPath} is not a directory`,
    );
  }
  const annotations = (spec as { annotations?: unknown }).annotations;
  if (
    annotations !== undefined &&
    (typeof annotations !== 'object' ||
      annotations === null ||
      Array.isArray(annotations) ||
      !Object.values(annotations).every((v) => typeof v === 'string'))
  ) {
    throw new InvalidArgument(`${field}.config.json.annotations`, 'must be a map of strings to strings');
  }
  const args = s.process?.args;
  if (args !== undefined && !(Array.isArray(args) && args.every((a) => typeof a === 'string'))) {
    throw new InvalidArgument(`${field}.config.json.process.args`, 'must be an array of strings');
  }
  return {
    path: resolved,
    ociVersion: s.ociVersion,
    rootPath,
    ...(args !== undefined ? { args: args as string[] } : {}),
    spec: spec as OciSpec,
  };
}
