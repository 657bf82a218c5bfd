// The image version: a hash of the recipe and of every input that goes into the image.
import { createHash } from 'node:crypto';
import type { ConsoleHelper } from './console.js';
import type { HostFile } from './hostfiles.js';
import type { ExtractedKernel } from './kernel.js';

/**
 * Version of this recipe. Bump it whenever the builder changes what it puts into an image in a way the
 * hashed inputs do not show (layout, initrd members, file modes): it is part of every image version.
 */
export const RECIPE_VERSION = 7;

/** Everything an image is made of, read and hashed. */
export interface ImageInputs {
  readonly kernelPackage: string;
  readonly kernel: ExtractedKernel;
  readonly initScript: Buffer;
  readonly agent: { code: Uint8Array; inputs: readonly string[] } | undefined;
  readonly proto: Buffer | undefined;
  readonly console: ConsoleHelper | undefined;
  readonly hostFiles: readonly (HostFile & { sha256: string })[];
  readonly applets: readonly { target: string; link: string }[];
}

/** 16 hex digits of the hash of the recipe version and the inputs; `moduleHashes` in kernel.modules order. */
export function versionOf(inputs: ImageInputs, moduleHashes: readonly string[]): string {
  const hash = createHash('sha256');
  const line = (text: string): void => {
    hash.update(text);
    hash.update('\n');
  };
  line(`recipe ${RECIPE_VERSION}`);
  line(`kernel ${inputs.kernelPackage} ${inputs.kernel.debPath.split('/').at(-1)}`);
  line(`modules ${inputs.kernel.modules.join(',')} ${moduleHashes.join(',')}`);
  line(`init ${createHash('sha256').update(inputs.initScript).digest('hex')}`);
  line(`agent ${inputs.agent ? createHash('sha256').update(inputs.agent.code).digest('hex') : 'none'}`);
  line(`proto ${inputs.proto ? createHash('sha256').update(inputs.proto).digest('hex') : 'none'}`);
  // By source: the compiled bytes may differ between gcc runs without the helper changing.
  line(
    `console ${inputs.console ? createHash('sha256').update(inputs.console.source).digest('hex') : 'none'}`,
  );
  for (const file of [...inputs.hostFiles].sort((a, b) => a.target.localeCompare(b.target))) {
    line(`file ${file.target} ${file.sha256}`);
  }
  return hash.digest('hex').slice(0, 16);
}
