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
// An open daemon connection (left by a failed command) must not keep the process alive; stdout/stderr
// to pipes and files are synchronous on Linux, so nothing written is lost.
process.exit(process.exitCode ?? EXIT.OK);
