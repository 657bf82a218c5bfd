// The guest agent as one ESM file: src/guest/main.ts bundled with esbuild, plus the list of sources it was made from.
import { stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { Internal } from '../errors/index.js';

/** Entry point and proto of the guest agent, relative to the project dir (written by the agent's owner). */
export const AGENT_ENTRY = 'src/guest/main.ts';
export const AGENT_PROTO = 'proto/agent.proto';

export interface AgentBundle {
  readonly code: Uint8Array;
  /** Absolute paths of every source file esbuild read: the image is rebuilt when one of them changes. */
  readonly inputs: readonly string[];
}

// grpc-js, protobufjs and friends are CommonJS and call require() at run time; an ESM bundle has none of its own.
// Their free __dirname/__filename are rewritten (define) to the bundle's own, under names no module declares.
const BANNER = [
  "import { createRequire as __sandboxdCreateRequire } from 'node:module';",
  "import { fileURLToPath as __sandboxdFileURLToPath } from 'node:url';",
  'const require = __sandboxdCreateRequire(import.meta.url);',
  'const __sandboxdFilename = __sandboxdFileURLToPath(import.meta.url);',
  "const __sandboxdDirname = __sandboxdFilename.slice(0, __sandboxdFilename.lastIndexOf('/'));",
].join('\n');

/** Bundles the agent, or resolves undefined when the project has no agent entry yet. Throws Internal on build errors. */
export async function bundleAgent(projectDir: string): Promise<AgentBundle | undefined> {
  const entry = join(projectDir, AGENT_ENTRY);
  if (!(await stat(entry).catch(() => undefined))) return undefined;
  // Loaded on demand: the fast path of ensureGuestImage never pays for esbuild.
  const esbuild = await import('esbuild');
  try {
    const result = await esbuild.build({
      absWorkingDir: projectDir,
      entryPoints: [entry],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      write: false,
      metafile: true,
      logLevel: 'silent',
      legalComments: 'none',
      banner: { js: BANNER },
      define: { __dirname: '__sandboxdDirname', __filename: '__sandboxdFilename' },
      outfile: join(projectDir, 'dist', 'agent.mjs'),
    });
    const output = result.outputFiles.find((file) => file.path.endsWith('.mjs'));
    if (!output) throw new Internal('image: bundle agent', 'esbuild produced no output');
    const inputs = Object.keys(result.metafile.inputs)
      .filter((input) => !input.includes(':'))
      .map((input) => (isAbsolute(input) ? input : join(projectDir, input)));
    return { code: output.contents, inputs };
  } catch (error) {
    if (error instanceof Internal) throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new Internal('image: bundle agent', message, { entry }, error);
  }
}
