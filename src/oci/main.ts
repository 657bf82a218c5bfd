#!/usr/bin/env node
// sandboxd-runc: an OCI runtime with runc's command line whose containers run in sandboxd VMs (docs/oci-cli.md).
import { CommanderError } from 'commander';
import { describe } from './errors.js';
import { buildProgram, socketOf } from './program.js';

const program = buildProgram();
program.command.exitOverride();
try {
  await program.command.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 1;
  } else {
    const message = describe(err, socketOf(program.command.opts()));
    program.logger()?.error({ err: err instanceof Error ? err.message : String(err) }, message);
    process.stderr.write(`${message}\n`);
    process.exitCode = 1;
  }
}
await Promise.all([process.stdout, process.stderr].map(flushed));
process.exit(process.exitCode ?? 0);

function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || stream.writableLength === 0) return resolve();
    stream.once('error', () => resolve());
    stream.write('', () => resolve());
  });
}
