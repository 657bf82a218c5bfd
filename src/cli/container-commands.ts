// sandboxctl's container commands: one per API method of the container group.
import { resolve } from 'node:path';
import { type CliContext, collect, int } from './context.js';
import { type LogsOptions, printLogs, withLogFlags } from './logs.js';
import { collectVolume, type VolumeArg } from './network.js';
import { show, table } from './output.js';

interface ContainerRow {
  id: string;
  state: string;
  pid?: number;
  exit?: { exitCode: number; signal?: string; oomKilled?: boolean };
  bundle: string;
  execs: string[];
}

const exitText = (e?: ContainerRow['exit']) =>
  e ? `${e.exitCode}${e.signal ? ` (${e.signal})` : ''}${e.oomKilled ? ' OOM' : ''}` : '';
const containerTable = (rows: ContainerRow[]) =>
  table(
    ['ID', 'STATE', 'PID', 'EXIT', 'EXECS', 'BUNDLE'],
    rows.map((c) => [c.id, c.state, c.pid, exitText(c.exit), c.execs.length, c.bundle]),
  );

export function registerContainerCommands(ctx: CliContext): void {
  const { program, globals, api, call } = ctx;
  const container = program.command('container').alias('ctr').description('containers in a sandbox');
  container
    .command('create <sandbox> <id> <bundle> [cmd...]')
    .description('create a container from an OCI bundle (cmd overrides the bundle’s args)')
    .option('--env <k=v>', 'environment (repeatable; with cmd)', collect)
    .option('--cwd <dir>', 'working directory (with cmd)')
    .option('--memory-limit <bytes>', 'memory limit', int('memory-limit'))
    .option('--pids-limit <n>', 'pids limit', int('pids-limit'))
    .option(
      '-v, --volume <src:dst[:ro]>',
      'bind a host directory or file into the container (repeatable)',
      collectVolume,
    )
    .action(
      call(
        'container.create',
        (
          sandboxId: string,
          id: string,
          bundle: string,
          cmd: string[],
          o: { env?: string[]; cwd?: string; memoryLimit?: number; pidsLimit?: number; volume?: VolumeArg[] },
        ) => ({
          sandboxId,
          id,
          bundle: resolve(bundle),
          ...(o.volume ? { mounts: o.volume } : {}),
          ...(cmd.length > 0
            ? { process: { args: cmd, ...(o.env ? { env: o.env } : {}), ...(o.cwd ? { cwd: o.cwd } : {}) } }
            : {}),
          ...(o.memoryLimit || o.pidsLimit
            ? {
                resources: {
                  ...(o.memoryLimit ? { memoryLimitBytes: o.memoryLimit } : {}),
                  ...(o.pidsLimit ? { pidsLimit: o.pidsLimit } : {}),
                },
              }
            : {}),
        }),
      ),
    );
  for (const [verb, text] of [
    ['start', "start the container's process"],
    ['pause', 'freeze it'],
    ['resume', 'thaw it'],
    ['state', "a container's current view"],
    ['stats', 'cgroup v2 stats'],
  ] as const) {
    container
      .command(`${verb} <sandbox> <id>`)
      .description(text)
      .action(call(`container.${verb}`, (sandboxId: string, id: string) => ({ sandboxId, id })));
  }
  container
    .command('ps <sandbox> <id>')
    .description('processes in the container')
    .action(
      call(
        'container.ps',
        (sandboxId: string, id: string) => ({ sandboxId, id }),
        (rows: { pid: number; user?: string; command: string }[]) =>
          table(
            ['PID', 'USER', 'COMMAND'],
            rows.map((r) => [r.pid, r.user, r.command]),
          ),
      ),
    );
  container
    .command('kill <sandbox> <id> [signal]')
    .description('signal the container (default SIGTERM)')
    .option('-a, --all', 'every process of the container')
    .action(
      call(
        'container.kill',
        (sandboxId: string, id: string, signal: string | undefined, o: { all?: boolean }) => ({
          sandboxId,
          id,
          ...(signal ? { signal: /^\d+$/.test(signal) ? Number(signal) : signal.toUpperCase() } : {}),
          ...(o.all ? { all: true } : {}),
        }),
      ),
    );
  container
    .command('wait <sandbox> <id>')
    .description("wait for the container's exit; exits with its code")
    .option('--timeout <ms>', 'give up after', int('timeout'))
    .action(async (sandboxId: string, id: string, o: { timeout?: number }) => {
      const status = (await (
        await api()
      ).call('container.wait', {
        sandboxId,
        id,
        ...(o.timeout ? { timeoutMs: o.timeout } : {}),
      })) as { exitCode: number };
      show(globals(), status);
      process.exitCode = status.exitCode;
    });
  container
    .command('delete <sandbox> <id>')
    .alias('rm')
    .description('remove a container (--force: kill it first)')
    .option('-f, --force', 'kill it first')
    .action(
      call('container.delete', (sandboxId: string, id: string, o: { force?: boolean }) => ({
        sandboxId,
        id,
        ...(o.force ? { force: true } : {}),
      })),
    );
  container
    .command('list <sandbox>')
    .alias('ls')
    .description('containers of a sandbox')
    .action(call('container.list', (sandboxId: string) => ({ sandboxId }), containerTable));
  container
    .command('update <sandbox> <id>')
    .description('change resource limits')
    .option('--memory-limit <bytes>', 'memory limit', int('memory-limit'))
    .option('--cpu-quota <us>', 'CPU quota', int('cpu-quota'))
    .option('--cpu-period <us>', 'CPU period', int('cpu-period'))
    .option('--cpu-shares <n>', 'CPU shares (relative weight, 2-262144)', int('cpu-shares'))
    .option('--cpuset-cpus <list>', 'host CPUs the VM is pinned to (e.g. 0-3,6)')
    .option('--cpuset-mems <list>', 'host memory nodes (all online nodes only)')
    .option('--pids-limit <n>', 'pids limit', int('pids-limit'))
    .action(
      call(
        'container.update',
        (
          sandboxId: string,
          id: string,
          o: {
            memoryLimit?: number;
            cpuQuota?: number;
            cpuPeriod?: number;
            cpuShares?: number;
            cpusetCpus?: string;
            cpusetMems?: string;
            pidsLimit?: number;
          },
        ) => ({
          sandboxId,
          id,
          resources: {
            ...(o.memoryLimit ? { memoryLimitBytes: o.memoryLimit } : {}),
            ...(o.cpuQuota ? { cpuQuota: o.cpuQuota } : {}),
            ...(o.cpuPeriod ? { cpuPeriod: o.cpuPeriod } : {}),
            ...(o.cpuShares ? { cpuShares: o.cpuShares } : {}),
            ...(o.cpusetCpus ? { cpusetCpus: o.cpusetCpus } : {}),
            ...(o.cpusetMems ? { cpusetMems: o.cpusetMems } : {}),
            ...(o.pidsLimit ? { pidsLimit: o.pidsLimit } : {}),
          },
        }),
      ),
    );
  withLogFlags(
    container
      .command('logs <sandbox> <id>')
      .description("the init process's output, from its host log (kept until the container is deleted)"),
  ).action(async (sandboxId: string, id: string, o: LogsOptions) => {
    await printLogs(api, globals().socket, { sandboxId, containerId: id, execId: '' }, o, globals().json);
  });
}
