#!/usr/bin/env node
// containerd-shim-sandboxd-v1: containerd's runtime v2 shim for sandboxd (runtime io.containerd.sandboxd.v1).
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { parseArgs, UsageError } from './args.js';
import { shimSocketPath } from './naming.js';
import { DEFAULT_SANDBOXD_SOCKET, serve } from './server.js';
import { deleteCommand, startCommand } from './start.js';

const VERSION = '0.1.0';

function bundleLog(args: { bundle: string }): pino.DestinationStream {
  // containerd reads the `log` fifo in the bundle; without a reader (or outside a bundle) stderr is used.
  try {
    const fd = openSync(join(args.bundle || process.cwd(), 'log'), 'a');
    return pino.destination({ fd, sync: true });
  } catch {
    return pino.destination({ fd: 2, sync: true });
  }
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (args.version) {
    process.stdout.write(
      `containerd-shim-sandboxd-v1:\n  Version: ${VERSION}\n  Runtime: io.containerd.sandboxd.v1\n`,
    );
    return 0;
  }
  const level = args.debug ? 'debug' : 'info';
  const sandboxdSocket = process.env.SANDBOXD_SOCKET ?? DEFAULT_SANDBOXD_SOCKET;
  const entry = fileURLToPath(import.meta.url);
  switch (args.action) {
    case 'start': {
      const log = pino(
        { name: 'sandboxd-shim', level, base: { id: args.id, namespace: args.namespace } },
        bundleLog(args),
      );
      const address = await startCommand(args, entry, log);
      process.stdout.write(address);
      return 0;
    }
    case 'delete': {
      const log = pino(
        { name: 'sandboxd-shim', level, base: { id: args.id, namespace: args.namespace } },
        bundleLog(args),
      );
      const bytes = await deleteCommand(args, sandboxdSocket, log);
      process.stdout.write(bytes);
      return 0;
    }
    case 'serve': {
      const log = pino({ name: 'sandboxd-shim', level }, pino.destination({ fd: 2, sync: true }));
      await serve({
        socketPath: shimSocketPath(args.address),
        ttrpcAddress: process.env.TTRPC_ADDRESS ?? `${args.address}.ttrpc`,
        sandboxdSocket,
        log,
      });
      return 0;
    }
    default:
      throw new UsageError(`unknown action ${JSON.stringify(args.action)}: want start, delete or -v`);
  }
}

main().then(
  (code) => {
    process.exitCode = code;
    if (process.argv.includes('serve')) process.exit(code);
  },
  (err: Error) => {
    process.stderr.write(`containerd-shim-sandboxd-v1: ${err.message}\n`);
    process.exitCode = 1;
  },
);
