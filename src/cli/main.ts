#!/usr/bin/env node
// sandboxctl: the command-line client of sandboxd (see `sandboxctl --help` for commands and exit codes).
import { CommanderError } from 'commander';
import { EXIT, exitCodeOf } from './exit-codes.js';
import { buildProgram, reportError } from './program.js';

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version exit 0; every other parse failure is a usage error.
    process.exitCode = err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  } else {
    reportError(err, Boolean(program.opts().json));
    process.exitCode = exitCodeOf(err);
  }
}
// An open daemon connection (left by a failed command) must not keep the process alive, so the process exits
// here; but only once stdout and stderr are flushed: writes to a pipe are asynchronous in Node, and exiting
// with bytes still queued cut piped output at 64 KiB (`sandboxctl … | jq`).
await Promise.all([process.stdout, process.stderr].map(flushed));
process.exit(process.exitCode ?? EXIT.OK);

/** Resolves once everything written to `stream` so far has been handed to the OS (or the stream failed). */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || stream.writableLength === 0) return resolve();
    stream.once('error', () => resolve());
    stream.write('', () => resolve());
  });
}
