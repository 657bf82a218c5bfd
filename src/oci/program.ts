// sandboxd-runc's command line: runc 1.1's global flags and commands, each a client call to sandboxd.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import type { Logger } from 'pino';
import { connectApi, ID_PATTERN } from '../api/index.js';
import type { Ctx } from './context.js';
import { execIn } from './exec.js';
import { create, kill, pause, remove, resume, run, start } from './lifecycle.js';
import { openLogger } from './logger.js';
import { features, list, listTable, ps, state, statsEvent, update } from './query.js';
import { readPointer } from './records.js';
import { SPEC_VERSION } from './state.js';

export const DEFAULT_ROOT = '/run/sandboxd-runc';
export const DEFAULT_SANDBOXD_SOCKET = '/run/sandboxd/sandboxd.sock';

const collect = (v: string, prev: string[] = []) => [...prev, v];
const projectDir = fileURLToPath(new URL('../../..', import.meta.url));

export interface GlobalFlags {
  root: string;
  log?: string;
  logFormat: string;
  debug?: boolean;
  systemdCgroup?: boolean;
  sandboxdSocket?: string;
  version?: boolean;
}

/** runc's --version shape: the version, the commit, the runtime-spec version. */
export function versionText(): string {
  const pkg = JSON.parse(readFileSync(resolve(projectDir, 'package.json'), 'utf8')) as { version: string };
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: projectDir,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim();
  } catch {
    // not a checkout: the version alone says which it is
  }
  return `sandboxd-runc version ${pkg.version}\ncommit: ${commit}\nspec: ${SPEC_VERSION}\nnode: ${process.version}\n`;
}

export function socketOf(flags: GlobalFlags): string {
  return resolve(flags.sandboxdSocket ?? process.env.SANDBOXD_SOCKET ?? DEFAULT_SANDBOXD_SOCKET);
}

export interface Program {
  readonly command: Command;
  /** The logger of the last parsed command line (for the error report). */
  logger(): Logger | undefined;
}

export function buildProgram(): Program {
  let logger: Logger | undefined;
  const program = new Command('sandboxd-runc')
    .description('An OCI runtime (runc 1.1 command line) whose containers run in sandboxd VMs')
    .enablePositionalOptions()
    .option(
      '--root <dir>',
      'directory of the container records (default $SANDBOXD_RUNC_ROOT or /run/sandboxd-runc)',
      process.env.SANDBOXD_RUNC_ROOT ?? DEFAULT_ROOT,
    )
    .option('--log <file>', 'log file (default: none; --debug logs to stderr)')
    .addOption(new Option('--log-format <format>', 'log format').choices(['text', 'json']).default('text'))
    .option('--debug', 'log debug records')
    .option(
      '--systemd-cgroup',
      "linux.cgroupsPath is systemd's slice:prefix:name: the VM and the keeper join the cgroup systemd would make",
    )
    .option('--rootless <value>', 'accepted for compatibility (sandboxd runs the VMs)')
    .option('--criu <path>', 'accepted for compatibility (no checkpoint support)')
    .option(
      '--sandboxd-socket <path>',
      `sandboxd's socket (default $SANDBOXD_SOCKET or ${DEFAULT_SANDBOXD_SOCKET})`,
    )
    .option('-v, --version', 'print the version')
    .action(() => {
      if ((program.opts() as GlobalFlags).version) process.stdout.write(versionText());
      else program.help();
    });

  const withCtx =
    <A extends unknown[]>(fn: (ctx: Ctx, ...args: A) => Promise<unknown>) =>
    async (...args: A) => {
      const flags = program.opts() as GlobalFlags;
      logger = openLogger(flags);
      // No socket named and the default root: a pointer left by create may name both (see records.ts).
      const named = flags.sandboxdSocket ?? process.env.SANDBOXD_SOCKET;
      const pointer =
        !named &&
        resolve(flags.root) === DEFAULT_ROOT &&
        typeof args[0] === 'string' &&
        ID_PATTERN.test(args[0])
          ? await readPointer(DEFAULT_ROOT, args[0])
          : undefined;
      const socket = pointer?.socket ?? socketOf(flags);
      const root = pointer?.root ?? resolve(flags.root);
      await mkdir(root, { recursive: true, mode: 0o700 });
      const client = await connectApi(socket);
      try {
        const ctx: Ctx = {
          client,
          root,
          defaultRoot: DEFAULT_ROOT,
          socket,
          log: logger,
          systemdCgroup: flags.systemdCgroup === true,
        };
        const code = await fn(ctx, ...args);
        if (typeof code === 'number') process.exitCode = code;
      } finally {
        client.close();
      }
    };
  const out = (s: string) => process.stdout.write(s);

  const createOptions = (c: Command) =>
    c
      .option('-b, --bundle <dir>', 'the bundle directory', '.')
      .option('--pid-file <file>', 'write the host pid that stands for the process (its keeper) here')
      .option('--console-socket <path>', 'unix socket that receives the pty master (SCM_RIGHTS)')
      .option('--no-pivot', 'accepted (the guest decides)')
      .option('--no-new-keyring', 'accepted (the guest decides)')
      .option('--preserve-fds <n>', 'accepted (no extra fds reach the VM)');

  createOptions(program.command('create').description('create a container (all but its process)'))
    .argument('<id>')
    .action(
      withCtx(async (ctx, id: string, o: { bundle: string; pidFile?: string; consoleSocket?: string }) => {
        await create(ctx, id, o);
      }),
    );

  program
    .command('start')
    .description('run the process of a created container')
    .argument('<id>')
    .action(withCtx((ctx, id: string) => start(ctx, id)));

  program
    .command('state')
    .description("print the container's state (runtime-spec JSON)")
    .argument('<id>')
    .action(withCtx(async (ctx, id: string) => out(`${JSON.stringify(await state(ctx, id), null, 2)}\n`)));

  program
    .command('kill')
    .description('send a signal (name or number, default SIGTERM) to the container')
    .argument('<id>')
    .argument('[signal]', 'signal', 'SIGTERM')
    .option('-a, --all', 'to every process of the container')
    .action(
      withCtx((ctx, id: string, signal: string, o: { all?: boolean }) =>
        kill(ctx, id, signal, o.all === true),
      ),
    );

  program
    .command('delete')
    .description('delete a stopped (or created) container; --force kills a running one first')
    .argument('<id>')
    .option('-f, --force', 'kill it first if it runs')
    .action(withCtx((ctx, id: string, o: { force?: boolean }) => remove(ctx, id, o.force === true)));

  createOptions(program.command('run').description('create and start a container; attached unless --detach'))
    .argument('<id>')
    .option('-d, --detach', 'return once it started')
    .option('--keep', 'do not delete the container after it exits')
    .option('--no-subreaper', 'accepted')
    .action(
      withCtx(
        (
          ctx,
          id: string,
          o: { bundle: string; pidFile?: string; consoleSocket?: string; detach?: boolean; keep?: boolean },
        ) => run(ctx, id, o),
      ),
    );

  program
    .command('list')
    .description('list the containers of --root')
    .addOption(
      new Option('-f, --format <format>', 'output format').choices(['table', 'json']).default('table'),
    )
    .option('-q, --quiet', 'ids only')
    .action(
      withCtx(async (ctx, o: { format: string; quiet?: boolean }) => {
        const states = await list(ctx);
        if (o.quiet) out(states.map((s) => `${s.id}\n`).join(''));
        else if (o.format === 'json') out(`${JSON.stringify(states)}\n`);
        else out(listTable(states));
      }),
    );

  program
    .command('ps')
    .description("the container's processes (guest pids)")
    .argument('<id>')
    .argument('[ps-args...]', 'ignored (the processes are listed by the guest)')
    .addOption(
      new Option('-f, --format <format>', 'output format').choices(['table', 'json']).default('table'),
    )
    .action(
      withCtx(async (ctx, id: string, _a: string[], o: { format: string }) =>
        out(await ps(ctx, id, o.format)),
      ),
    );

  program
    .command('pause')
    .description('freeze every process of the container')
    .argument('<id>')
    .action(withCtx((ctx, id: string) => pause(ctx, id)));

  program
    .command('resume')
    .description('thaw a paused container')
    .argument('<id>')
    .action(withCtx((ctx, id: string) => resume(ctx, id)));

  program
    .command('features')
    .description('what this runtime supports (JSON)')
    .action(() => {
      out(`${JSON.stringify(features(), null, 2)}\n`);
    });

  program
    .command('exec')
    .description('run an extra process in a running container')
    .argument('<id>')
    .argument('[args...]', 'the command (or --process)')
    .passThroughOptions()
    .option('-p, --process <file>', 'an OCI process JSON (- for stdin)')
    .option('-t, --tty', 'on a terminal')
    .option('--console-socket <path>', 'unix socket that receives the pty master (SCM_RIGHTS)')
    .option('-d, --detach', 'return once it started')
    .option('--pid-file <file>', 'write the host pid that stands for the process (its keeper) here')
    .option('--cwd <dir>', 'working directory')
    .option('-e, --env <K=V>', 'environment variable (repeatable)', collect)
    .option('-u, --user <uid[:gid]>', 'user')
    .option('-c, --cap <cap>', 'accepted (capabilities are the container process set)', collect)
    .option('--preserve-fds <n>', 'accepted')
    .option('--no-new-privs', 'accepted')
    .option('--process-label <label>', 'accepted')
    .option('--apparmor <profile>', 'accepted')
    .action(withCtx((ctx, id: string, args: string[], o) => execIn(ctx, id, args, o)));

  program
    .command('update')
    .description("change a container's resource limits")
    .argument('<id>')
    .allowUnknownOption()
    .option('-r, --resources <file>', 'LinuxResources JSON (- for stdin)')
    .option('--memory <bytes>', 'memory limit')
    .option('--cpu-quota <us>', 'CPU quota per period')
    .option('--cpu-period <us>', 'CPU period')
    .option('--cpu-share <shares>', 'CPU shares (relative weight, 2-262144)')
    .option('--cpuset-cpus <list>', 'host CPUs the VM runs on (e.g. 0-3,6)')
    .option('--cpuset-mems <list>', 'host memory nodes (all online nodes only)')
    .option('--pids-limit <n>', 'maximum number of processes')
    .action(withCtx((ctx, id: string, o) => update(ctx, id, o)));

  program
    .command('events')
    .description("the container's stats as JSON lines, every --interval (or once with --stats)")
    .argument('<id>')
    .option('--stats', 'print one stats line and exit')
    .option('--interval <duration>', 'between stats lines (e.g. 5s, 500ms)', '5s')
    .action(
      withCtx(async (ctx, id: string, o: { stats?: boolean; interval: string }) => {
        const ms = durationMs(o.interval);
        for (;;) {
          out(`${JSON.stringify(await statsEvent(ctx, id))}\n`);
          if (o.stats) return;
          await new Promise((r) => setTimeout(r, ms));
        }
      }),
    );

  return { command: program, logger: () => logger };
}

function durationMs(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s);
  if (!m) throw new Error(`invalid --interval ${JSON.stringify(s)}: a duration such as 5s or 500ms`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}
