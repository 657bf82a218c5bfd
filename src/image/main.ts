// CLI of the image builder: `build` (ensure + print), `path` (JSON of the paths), `bundle DIR [-- CMD...]`.
import { resolve } from 'node:path';
import { Command } from 'commander';
import pino from 'pino';
import { createBusyboxBundle, defaultImageCacheDir, ensureGuestImage } from './index.js';

// A CLI prints for people on stdout (library code logs through pino instead).
function say(line: string): void {
  process.stdout.write(`${line}\n`);
}
// `sandboxd-image path | head -c0` and friends close the pipe early: that is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

const program = new Command();
program.name('sandboxd-image').description('Builds and locates the sandboxd guest image');

program
  .command('build')
  .description('build the guest image if an input changed, then print its paths')
  .option('--cache-dir <dir>', 'image cache dir', defaultImageCacheDir())
  .option('-v, --verbose', 'log every step as JSON on stderr')
  .action(async (options: { cacheDir: string; verbose?: boolean }) => {
    const logger = pino(
      { name: 'sandboxd-image', level: options.verbose ? 'debug' : 'warn' },
      pino.destination(2),
    );
    const started = Date.now();
    const image = await ensureGuestImage({ cacheDir: resolve(options.cacheDir), logger });
    say(`guest image ${image.version} ready in ${Date.now() - started} ms`);
    say(`  kernel  ${image.kernel}`);
    say(`  initrd  ${image.initrd}`);
    say(`  rootDir ${image.rootDir}`);
    if (image.rootImage) say(`  rootImage ${image.rootImage}`);
  });

program
  .command('path')
  .description('print the guest image paths as JSON (builds it first if needed)')
  .option('--cache-dir <dir>', 'image cache dir', defaultImageCacheDir())
  .action(async (options: { cacheDir: string }) => {
    const logger = pino({ name: 'sandboxd-image', level: 'warn' }, pino.destination(2));
    const image = await ensureGuestImage({ cacheDir: resolve(options.cacheDir), logger });
    say(JSON.stringify(image));
  });

program
  .command('bundle')
  .description('write an OCI bundle with a busybox-static rootfs into DIR; CMD after -- (default: sh)')
  .argument('<dir>', 'bundle directory (created if needed)')
  .argument('[cmd...]', 'command of the container process')
  .option('--memory <bytes>', 'memory limit in bytes', (value) => Number.parseInt(value, 10))
  .option('--cgroups-path <path>', 'linux.cgroupsPath, e.g. /sandboxd/<id>')
  .option('-t, --tty', 'allocate a terminal')
  .option('-e, --env <KEY=VALUE...>', 'environment entries')
  .option('--cwd <dir>', 'working directory in the container')
  .action(
    async (
      dir: string,
      cmd: string[],
      options: { memory?: number; cgroupsPath?: string; tty?: boolean; env?: string[]; cwd?: string },
    ) => {
      const target = resolve(dir);
      await createBusyboxBundle(target, {
        args: cmd.length > 0 ? cmd : ['sh'],
        env: options.env ?? [],
        cwd: options.cwd ?? '/',
        terminal: options.tty ?? false,
        ...(options.memory !== undefined ? { memoryLimitBytes: options.memory } : {}),
        ...(options.cgroupsPath !== undefined ? { cgroupsPath: options.cgroupsPath } : {}),
      });
      say(`bundle written to ${target}`);
    },
  );

program.parseAsync(process.argv).catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`sandboxd-image: ${message}\n`);
  process.exit(1);
});
