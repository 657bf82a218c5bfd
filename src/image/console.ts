// The terminal helper of the guest (src/guest/sbx-console.c), compiled static on the host so it needs nothing in the guest.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Internal } from '../errors/index.js';
import { run } from './exec.js';

/** Source of the helper, relative to the project dir (owned by the guest agent's author). */
export const CONSOLE_HELPER_SOURCE = 'src/guest/sbx-console.c';
/** Where the guest root holds it (the agent's GuestPaths.consoleHelper). */
export const CONSOLE_HELPER_TARGET = 'usr/bin/sbx-console';

export interface ConsoleHelper {
  readonly source: Buffer;
  readonly binary: Buffer;
}

/**
 * Compiles the helper with `gcc -static -O2`, or resolves undefined when the project has no helper source.
 * Throws Internal with what to install when gcc or the static libc is missing.
 */
export async function compileConsoleHelper(projectDir: string): Promise<ConsoleHelper | undefined> {
  const sourcePath = join(projectDir, CONSOLE_HELPER_SOURCE);
  if (!(await stat(sourcePath).catch(() => undefined))) return undefined;
  const source = await readFile(sourcePath);
  const dir = await mkdtemp(join(tmpdir(), 'sbx-console-build-'));
  try {
    const output = join(dir, 'sbx-console');
    const result = await run('gcc', ['-static', '-O2', '-Wall', '-o', output, sourcePath]).catch(
      (error: unknown) => {
        throw new Internal(
          'image: compile sbx-console',
          'gcc is not installed: the guest terminal helper is compiled at image build time; install gcc and ' +
            'libc6-dev (scripts/setup.sh does)',
          { source: sourcePath },
          error,
        );
      },
    );
    if (result.code !== 0) {
      const hint = /cannot find -lc|crt1\.o/.test(result.stderr)
        ? ' (no static libc: install libc6-dev, see scripts/setup.sh)'
        : '';
      throw new Internal(
        'image: compile sbx-console',
        `gcc exited ${result.code}${hint}: ${result.stderr.trim().slice(-2000)}`,
        { source: sourcePath },
      );
    }
    return { source, binary: await readFile(output) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
