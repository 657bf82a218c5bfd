// sandboxctl's commands: one per API method, plus run, bundle, raw call, api-docs and the event tooling.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { type ApiClient, connectApi, renderApiDocs } from '../api/index.js';
import { InvalidArgument } from '../errors/index.js';
import { createBusyboxBundle } from '../image/index.js';
import { registerContainerCommands } from './container-commands.js';
import { type CliContext, collect, int } from './context.js';
import { type GlobalOptions, registerEventCommands } from './events.js';
import { registerExecCommands } from './exec-commands.js';
import { exitCodeDocs } from './exit-codes.js';
import { registerGuestCommands } from './guest-commands.js';
import { collectPort, collectVolume, NETNS_HELP, type PortMappingArg, type VolumeArg } from './network.js';
import { printJson, show } from './output.js';
import { runContainer } from './run.js';
import { registerSandboxCommands } from './sandbox-commands.js';
import { registerTemplateCommands } from './templates.js';

export const DEFAULT_SOCKET = '/run/sandboxd/sandboxd.sock';

/** Builds the program. `out.exitCode` is what main exits with. */
export function buildProgram(): Command {
  const program = new Command('sandboxctl');
  // Parse failures throw (subcommands inherit this) so main can exit with the usage code.
  program.exitOverride();
  program
    .description(
      'Drive sandboxd over its JSON-RPC socket: sandboxes (VMs), containers, execs, the event log.',
    )
    .addOption(
      new Option('--socket <path>', 'the daemon socket').env('SANDBOXD_SOCKET').default(DEFAULT_SOCKET),
    )
    .option('--json', 'print JSON instead of tables', false)
    .option('--state-dir <dir>', 'for `events`: read the store directly (offline) when no daemon runs')
    .addHelpText('after', `\n${exitCodeDocs}`)
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const globals = (): GlobalOptions => {
    const o = program.opts<{ socket: string; json: boolean; stateDir?: string }>();
    return { socket: o.socket, json: Boolean(o.json), ...(o.stateDir ? { stateDir: o.stateDir } : {}) };
  };

  let client: ApiClient | undefined;
  const api = async (): Promise<ApiClient> => {
    client ??= await connectApi(globals().socket);
    return client;
  };
  program.hook('postAction', () => {
    client?.close();
    client = undefined;
  });

  /** An action that calls one method and shows its result. */
  const call =
    <R>(method: string, params: (...args: never[]) => unknown, render?: (v: R) => string) =>
    async (...args: unknown[]) => {
      const c = await api();
      const result = await c.call<R>(method, (params as (...a: unknown[]) => unknown)(...args));
      show(globals(), result, render);
    };

  program
    .command('info')
    .description('daemon version, hypervisor mode (kvm/tcg), counts')
    .action(call('daemon.info', () => ({})));

  program
    .command('metrics')
    .description('Prometheus text: sandboxes, containers, event log writer, API traffic, VM costs')
    .action(async () => {
      const r = await (await api()).call<{ metrics: string }>('daemon.metrics');
      if (globals().json) printJson(r);
      else process.stdout.write(r.metrics);
    });

  program
    .command('call <method> [params]')
    .description('call any method with params as JSON (or @file)')
    .action(async (method: string, params?: string) => {
      let parsed: unknown;
      if (params !== undefined) {
        const text = params.startsWith('@') ? await readFile(params.slice(1), 'utf8') : params;
        try {
          parsed = JSON.parse(text);
        } catch (err) {
          throw new InvalidArgument('params', `not JSON: ${(err as Error).message}`);
        }
      }
      printJson(await (await api()).call(method, parsed));
    });

  program
    .command('api-docs')
    .description('print the API reference (Markdown) generated from the method table')
    .action(() => {
      process.stdout.write(`${renderApiDocs()}\n`);
    });

  const ctx: CliContext = { program, globals, api, call };
  registerSandboxCommands(ctx);
  registerContainerCommands(ctx);
  registerExecCommands(ctx);
  registerGuestCommands(ctx);
  registerTemplateCommands(ctx);

  // The main job and its helper
  program
    .command('run <bundle> [cmd...]')
    .description('create a sandbox + container from BUNDLE, stream its output, exit with its exit code')
    .option('--rm', 'delete the sandbox afterwards')
    .option('--name <id>', 'sandbox id (default run-<random>)')
    .option('--vcpus <n>', 'vCPUs', int('vcpus'))
    .option('--memory <MiB>', 'memory', int('memory'))
    .option('--network <mode>', "'user' (outbound NAT, -p) or 'none' (default)")
    .option('--netns <path>', NETNS_HELP)
    .option('-p, --publish <[ip:]host:guest[/proto]>', 'forward a host port (repeatable)', collectPort)
    .option(
      '-v, --volume <src:dst[:ro]>',
      'bind a host directory or file into the container (repeatable)',
      collectVolume,
    )
    .option('-i, --interactive', 'copy stdin to the container (end of input closes its stdin)')
    .option('-t, --tty', 'on a terminal sized like this one (raw mode with -i)')
    .option('-q, --quiet', 'no progress lines')
    .action(
      async (
        bundle: string,
        cmd: string[],
        o: {
          rm?: boolean;
          name?: string;
          vcpus?: number;
          memory?: number;
          network?: string;
          netns?: string;
          publish?: PortMappingArg[];
          volume?: VolumeArg[];
          quiet?: boolean;
          interactive?: boolean;
          tty?: boolean;
        },
      ) => {
        const code = await runContainer(await api(), bundle, cmd, { ...o, json: globals().json });
        process.exitCode = code;
      },
    );
  program
    .command('bundle <dir> [cmd...]')
    .description('write a busybox-static demo OCI bundle to DIR (default command: sh)')
    .option('--env <k=v>', 'environment (repeatable)', collect)
    .action(async (dir: string, cmd: string[], o: { env?: string[] }) => {
      const target = resolve(dir);
      await createBusyboxBundle(target, {
        ...(cmd.length > 0 ? { args: cmd } : {}),
        ...(o.env ? { env: o.env } : {}),
      });
      if (globals().json) printJson({ bundle: target });
      else process.stdout.write(`${target}\n`);
    });

  registerEventCommands(program, globals);
  return program;
}

/** Shows an error the way scripts and people both can use: one line on stderr, JSON with --json. */
export function reportError(err: unknown, json: boolean): void {
  const e = err as Error & { kind?: string; details?: Record<string, unknown> };
  if (json) {
    process.stderr.write(
      `${JSON.stringify({ error: { kind: e.kind ?? 'Internal', message: e.message, ...(e.details ?? {}) } })}\n`,
    );
  } else {
    process.stderr.write(`sandboxctl: ${e.message}\n`);
  }
}
