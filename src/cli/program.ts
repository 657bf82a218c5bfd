// sandboxctl's commands: one per API method, plus run, bundle, raw call, api-docs and the event tooling.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { type ApiClient, connectApi, renderApiDocs } from '../api/index.js';
import { InvalidArgument } from '../errors/index.js';
import { createBusyboxBundle } from '../image/index.js';
import { execRun, processOf } from './attach.js';
import { type GlobalOptions, registerEventCommands } from './events.js';
import { exitCodeDocs } from './exit-codes.js';
import { type LogsOptions, printLogs, withLogFlags } from './logs.js';
import {
  collectPort,
  collectVolume,
  NETNS_HELP,
  networkConfig,
  type PortMappingArg,
  type VolumeArg,
} from './network.js';
import { printJson, shortTime, show, table } from './output.js';
import { withBootProgress } from './progress.js';
import { runContainer } from './run.js';

export const DEFAULT_SOCKET = '/run/sandboxd/sandboxd.sock';

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer`);
  return n;
};
const collect = (v: string, prev: string[] = []) => [...prev, v];

const mib = (bytes: number | undefined) => (bytes === undefined ? '' : `${(bytes / 1048576).toFixed(1)} MiB`);

function renderSandboxStats(s: {
  sandbox: { id: string; state: string; vcpus?: number; memoryMiB?: number };
  vm?: { pid: number; cpuSeconds: number; rssBytes: number; threads: number };
  containers: Record<string, { cpuUsageUsec: number; memoryUsageBytes: number; pids: number }>;
}): string {
  const vm = table(
    ['SANDBOX', 'STATE', 'VCPUS', 'MEMORY', 'QEMU PID', 'HOST CPU', 'HOST RSS', 'THREADS'],
    [
      [
        s.sandbox.id,
        s.sandbox.state,
        s.sandbox.vcpus,
        s.sandbox.memoryMiB === undefined ? '' : `${s.sandbox.memoryMiB} MiB`,
        s.vm?.pid,
        s.vm ? `${s.vm.cpuSeconds.toFixed(2)} s` : '',
        mib(s.vm?.rssBytes),
        s.vm?.threads,
      ],
    ],
  );
  const containers = table(
    ['CONTAINER', 'CPU', 'MEMORY', 'PIDS'],
    Object.entries(s.containers).map(([id, c]) => [
      id,
      `${(c.cpuUsageUsec / 1e6).toFixed(2)} s`,
      mib(c.memoryUsageBytes),
      c.pids,
    ]),
  );
  return `${vm}\n${containers}`;
}

interface SandboxRow {
  id: string;
  state: string;
  config: { ports?: PortMappingArg[] };
  vcpus?: number;
  memoryMiB?: number;
  pid?: number;
  accel?: string;
  containers: string[];
  createdAt: string;
  error?: string;
}
interface ContainerRow {
  id: string;
  state: string;
  pid?: number;
  exit?: { exitCode: number; signal?: string; oomKilled?: boolean };
  bundle: string;
  execs: string[];
}

/** Forwarded ports as docker prints them: 127.0.0.1:8080->80/tcp. */
const portsText = (ports: SandboxRow['config']['ports']) =>
  (ports ?? [])
    .map((p) => `${p.hostAddress ?? '127.0.0.1'}:${p.hostPort}->${p.guestPort}/${p.protocol ?? 'tcp'}`)
    .join(', ');

const sandboxTable = (rows: SandboxRow[]) =>
  table(
    ['ID', 'STATE', 'PID', 'ACCEL', 'VCPUS', 'MEMORY', 'PORTS', 'CONTAINERS', 'CREATED'],
    rows.map((s) => [
      s.id,
      s.error ? `${s.state} (${s.error})` : s.state,
      s.pid,
      s.accel,
      s.vcpus,
      s.memoryMiB === undefined ? '' : `${s.memoryMiB} MiB`,
      portsText(s.config.ports),
      s.containers.length,
      shortTime(s.createdAt),
    ]),
  );
const exitText = (e?: ContainerRow['exit']) =>
  e ? `${e.exitCode}${e.signal ? ` (${e.signal})` : ''}${e.oomKilled ? ' OOM' : ''}` : '';
const containerTable = (rows: ContainerRow[]) =>
  table(
    ['ID', 'STATE', 'PID', 'EXIT', 'EXECS', 'BUNDLE'],
    rows.map((c) => [c.id, c.state, c.pid, exitText(c.exit), c.execs.length, c.bundle]),
  );

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
    (method: string, params: (...args: never[]) => unknown, render?: (v: never) => string) =>
    async (...args: unknown[]) => {
      const c = await api();
      const result = await c.call(method, (params as (...a: unknown[]) => unknown)(...args));
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

  // Sandboxes
  const sandbox = program.command('sandbox').alias('sb').description('sandboxes (one VM each)');
  sandbox
    .command('create <id>')
    .description('record a new sandbox; --start also boots it')
    .option('--vcpus <n>', 'vCPUs at boot', int('vcpus'))
    .option('--max-vcpus <n>', 'vCPU hotplug limit', int('max-vcpus'))
    .option('--memory <MiB>', 'memory at boot', int('memory'))
    .option('--max-memory <MiB>', 'memory hotplug limit', int('max-memory'))
    .option('--hostname <name>', 'guest hostname')
    .option('--dns <ip>', 'DNS server (repeatable)', collect)
    .option('--label <k=v>', 'label (repeatable)', collect)
    .option(
      '--network <mode>',
      "'user': outbound NAT by QEMU, reachable through -p; 'none' (default): loopback only",
    )
    .option('--netns <path>', NETNS_HELP)
    .option(
      '-p, --publish <[ip:]host:guest[/proto]>',
      'forward a host port (127.0.0.1 by default; repeatable)',
      collectPort,
    )
    .option('--start', 'boot it right away')
    .action(
      async (
        id: string,
        o: {
          vcpus?: number;
          maxVcpus?: number;
          memory?: number;
          maxMemory?: number;
          hostname?: string;
          dns?: string[];
          label?: string[];
          network?: string;
          netns?: string;
          publish?: PortMappingArg[];
          start?: boolean;
        },
      ) => {
        const labels = o.label
          ? Object.fromEntries(
              o.label.map((l) => {
                const i = l.indexOf('=');
                if (i <= 0) throw new InvalidArgument('label', `${JSON.stringify(l)} is not k=v`);
                return [l.slice(0, i), l.slice(i + 1)];
              }),
            )
          : undefined;
        const config = {
          ...(o.vcpus !== undefined ? { vcpus: o.vcpus } : {}),
          ...(o.maxVcpus !== undefined ? { maxVcpus: o.maxVcpus } : {}),
          ...(o.memory !== undefined ? { memoryMiB: o.memory } : {}),
          ...(o.maxMemory !== undefined ? { maxMemoryMiB: o.maxMemory } : {}),
          ...(o.hostname ? { hostname: o.hostname } : {}),
          ...(o.dns ? { dns: o.dns } : {}),
          ...(labels ? { labels } : {}),
          ...networkConfig(o),
        };
        const c = await api();
        let view = await c.call('sandbox.create', { id, config });
        if (o.start) {
          try {
            view = await withBootProgress(
              `booting sandbox ${id}`,
              () => c.call('sandbox.start', { id }),
              !globals().json,
            );
          } catch (err) {
            // The create stands: say what is left, and how to retry or remove it.
            const state = await c.call<{ state: string }>('sandbox.status', { id }).then(
              (v) => v.state,
              () => 'unknown',
            );
            process.stderr.write(
              `sandboxctl: sandbox ${id} was created but did not start (now ${state}): \`sandboxctl sandbox start ${id}\` retries, \`sandboxctl sandbox delete ${id}\` removes it\n`,
            );
            throw err;
          }
        }
        show(globals(), view);
      },
    );
  sandbox
    .command('start <id>')
    .description('boot the VM and connect to its agent')
    .action(async (id: string) => {
      const c = await api();
      const view = await withBootProgress(
        `booting sandbox ${id}`,
        () => c.call('sandbox.start', { id }),
        !globals().json,
      );
      show(globals(), view);
    });
  sandbox
    .command('stop <id>')
    .description('stop the VM gracefully')
    .option('--timeout <ms>', 'powerdown grace before quit/SIGKILL', int('timeout'))
    .action(
      call('sandbox.stop', (id: string, o: { timeout?: number }) => ({
        id,
        ...(o.timeout ? { timeoutMs: o.timeout } : {}),
      })),
    );
  for (const [verb, text] of [
    ['pause', 'pause the VM'],
    ['resume', 'resume a paused VM'],
    ['status', "a sandbox's current view"],
  ] as const) {
    sandbox
      .command(`${verb} <id>`)
      .description(text)
      .action(call(`sandbox.${verb}`, (id: string) => ({ id })));
  }
  sandbox
    .command('stats <id>')
    .description('what the VM costs the host, and its containers’ cgroup stats')
    .action(call('sandbox.stats', (id: string) => ({ id }), renderSandboxStats as never));
  sandbox
    .command('update <id>')
    .description('grow a running sandbox: vCPUs and memory hotplugged up to its --max-vcpus / --max-memory')
    .option('--vcpus <n>', 'total vCPUs', int('vcpus'))
    .option('--memory <MiB>', 'total memory in MiB (grows by multiples of 128)', int('memory'))
    .action(
      call('sandbox.update', (id: string, o: { vcpus?: number; memory?: number }) => ({
        id,
        ...(o.vcpus === undefined ? {} : { vcpus: o.vcpus }),
        ...(o.memory === undefined ? {} : { memoryMiB: o.memory }),
      })),
    );
  sandbox
    .command('delete <id>')
    .alias('rm')
    .description('delete a stopped sandbox (--force: any state)')
    .option('-f, --force', 'stop it first if needed')
    .action(
      call('sandbox.delete', (id: string, o: { force?: boolean }) => ({
        id,
        ...(o.force ? { force: true } : {}),
      })),
    );
  sandbox
    .command('list')
    .alias('ls')
    .description('all sandboxes')
    .option('--state <state>', 'only in this state')
    .action(
      call(
        'sandbox.list',
        (o: { state?: string }) => (o.state ? { state: o.state } : {}),
        sandboxTable as never,
      ),
    );

  // Containers
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
      call('container.ps', (sandboxId: string, id: string) => ({ sandboxId, id }), ((
        rows: { pid: number; user?: string; command: string }[],
      ) =>
        table(
          ['PID', 'USER', 'COMMAND'],
          rows.map((r) => [r.pid, r.user, r.command]),
        )) as never),
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
    .action(call('container.list', (sandboxId: string) => ({ sandboxId }), containerTable as never));
  container
    .command('update <sandbox> <id>')
    .description('change resource limits')
    .option('--memory-limit <bytes>', 'memory limit', int('memory-limit'))
    .option('--cpu-quota <us>', 'CPU quota', int('cpu-quota'))
    .option('--cpu-period <us>', 'CPU period', int('cpu-period'))
    .option('--pids-limit <n>', 'pids limit', int('pids-limit'))
    .action(
      call(
        'container.update',
        (
          sandboxId: string,
          id: string,
          o: { memoryLimit?: number; cpuQuota?: number; cpuPeriod?: number; pidsLimit?: number },
        ) => ({
          sandboxId,
          id,
          resources: {
            ...(o.memoryLimit ? { memoryLimitBytes: o.memoryLimit } : {}),
            ...(o.cpuQuota ? { cpuQuota: o.cpuQuota } : {}),
            ...(o.cpuPeriod ? { cpuPeriod: o.cpuPeriod } : {}),
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

  // Execs
  const exec = program.command('exec').description('extra processes in a running container');
  exec
    .command('start <sandbox> <container> <exec> <cmd...>')
    .description('start a process (put the command after --)')
    .option('--env <k=v>', 'environment (repeatable)', collect)
    .option('--cwd <dir>', 'working directory')
    .option('--user <user>', 'uid[:gid] or name[:group]')
    .option('-t, --tty', 'with a terminal')
    .action(
      call(
        'exec.start',
        (
          sandboxId: string,
          containerId: string,
          execId: string,
          cmd: string[],
          o: { env?: string[]; cwd?: string; user?: string; tty?: boolean },
        ) => ({
          sandboxId,
          containerId,
          execId,
          process: processOf(cmd, o),
        }),
      ),
    );
  exec
    .command('run <sandbox> <container> <cmd...>')
    .description(
      'start a process and stay attached: output here, exit with its code (put the command after --)',
    )
    .option('--id <exec>', 'exec id (default exec-<random>)')
    .option('-i, --interactive', 'copy stdin to the process (end of input closes its stdin)')
    .option('-t, --tty', 'on a terminal sized like this one (raw mode with -i)')
    .option('--env <k=v>', 'environment (repeatable)', collect)
    .option('--cwd <dir>', 'working directory')
    .option('--user <user>', 'uid[:gid] or name[:group]')
    .action(
      async (
        sandboxId: string,
        containerId: string,
        cmd: string[],
        o: { id?: string; interactive?: boolean; tty?: boolean; env?: string[]; cwd?: string; user?: string },
      ) => {
        process.exitCode = await execRun(await api(), { sandboxId, containerId }, cmd, {
          ...(o.id ? { execId: o.id } : {}),
          ...(o.interactive ? { interactive: true } : {}),
          ...(o.tty ? { tty: true } : {}),
          ...(o.env ? { env: o.env } : {}),
          ...(o.cwd ? { cwd: o.cwd } : {}),
          ...(o.user ? { user: o.user } : {}),
          json: globals().json,
        });
      },
    );
  exec
    .command('state <sandbox> <container> <exec>')
    .description("an exec's current view")
    .action(
      call('exec.state', (sandboxId: string, containerId: string, execId: string) => ({
        sandboxId,
        containerId,
        execId,
      })),
    );
  exec
    .command('wait <sandbox> <container> <exec>')
    .description("wait for the exec's exit; exits with its code")
    .option('--timeout <ms>', 'give up after', int('timeout'))
    .action(async (sandboxId: string, containerId: string, execId: string, o: { timeout?: number }) => {
      const status = (await (
        await api()
      ).call('exec.wait', {
        sandboxId,
        containerId,
        execId,
        ...(o.timeout ? { timeoutMs: o.timeout } : {}),
      })) as { exitCode: number };
      show(globals(), status);
      process.exitCode = status.exitCode;
    });
  exec
    .command('kill <sandbox> <container> <exec> [signal]')
    .description('signal the exec (default SIGTERM)')
    .action(
      call('exec.kill', (sandboxId: string, containerId: string, execId: string, signal?: string) => ({
        sandboxId,
        containerId,
        execId,
        ...(signal ? { signal: /^\d+$/.test(signal) ? Number(signal) : signal.toUpperCase() } : {}),
      })),
    );
  exec
    .command('resize <sandbox> <container> <exec> <rows> <cols>')
    .description("resize the exec's terminal")
    .action(
      call(
        'exec.resize',
        (sandboxId: string, containerId: string, execId: string, rows: string, cols: string) => ({
          sandboxId,
          containerId,
          execId,
          rows: Number(rows),
          cols: Number(cols),
        }),
      ),
    );
  withLogFlags(
    exec
      .command('output <sandbox> <container> <exec>')
      .description("a process's output, from its host log (exec '-' = the container's init)"),
  ).action(async (sandboxId: string, containerId: string, execId: string, o: LogsOptions) => {
    const ref = { sandboxId, containerId, execId: execId === '-' ? '' : execId };
    await printLogs(api, globals().socket, ref, o, globals().json);
  });
  exec
    .command('write <sandbox> <container> <exec> [text]')
    .description("write text (or this command's stdin) to a process's stdin (exec '-' = init)")
    .option('--close', 'close stdin afterwards')
    .action(
      async (
        sandboxId: string,
        containerId: string,
        execId: string,
        text: string | undefined,
        o: { close?: boolean },
      ) => {
        const c = await api();
        const ref = { sandboxId, containerId, execId: execId === '-' ? '' : execId };
        const data = text !== undefined ? Buffer.from(text) : await readStdin();
        const r = await c.call('exec.writeStdin', { ...ref, data: data.toString('base64') });
        if (o.close) await c.call('exec.closeStdin', ref);
        show(globals(), r);
      },
    );
  exec
    .command('close-stdin <sandbox> <container> <exec>')
    .description("close a process's stdin (exec '-' = init)")
    .action(
      call('exec.closeStdin', (sandboxId: string, containerId: string, execId: string) => ({
        sandboxId,
        containerId,
        execId: execId === '-' ? '' : execId,
      })),
    );

  // Guest
  const guest = program.command('guest').description("calls into a sandbox's guest agent");
  guest
    .command('details <sandbox>')
    .description('agent version, kernel, CPUs, memory')
    .action(call('guest.details', (sandboxId: string) => ({ sandboxId })));
  guest
    .command('interfaces <sandbox>')
    .description('network interfaces')
    .action(
      call('guest.interfaces', (sandboxId: string) => ({ sandboxId }), ((
        rows: { name: string; mac?: string; mtu?: number; addresses: string[]; up?: boolean }[],
      ) =>
        table(
          ['NAME', 'MAC', 'MTU', 'UP', 'ADDRESSES'],
          rows.map((r) => [r.name, r.mac, r.mtu, r.up, r.addresses.join(' ')]),
        )) as never),
    );
  guest
    .command('routes <sandbox>')
    .description('routes')
    .action(
      call('guest.routes', (sandboxId: string) => ({ sandboxId }), ((
        rows: { dest: string; gateway?: string; device?: string; source?: string }[],
      ) =>
        table(
          ['DEST', 'GATEWAY', 'DEVICE', 'SOURCE'],
          rows.map((r) => [r.dest, r.gateway, r.device, r.source]),
        )) as never),
    );
  guest
    .command('set-interface <sandbox> <name>')
    .description('change a guest interface (recorded in the log; lasts as long as this VM)')
    .option('--address <cidr>', 'address/prefix, replacing the current ones (repeatable)', collect)
    .option('--mtu <n>', 'MTU', int('mtu'))
    .option('--mac <mac>', 'MAC address')
    .option('--up', 'bring it up')
    .option('--down', 'take it down')
    .action(
      call(
        'guest.updateInterface',
        (
          sandboxId: string,
          name: string,
          o: { address?: string[]; mtu?: number; mac?: string; up?: boolean; down?: boolean },
        ) => ({
          sandboxId,
          interface: {
            name,
            ...(o.address ? { addresses: o.address } : {}),
            ...(o.mtu !== undefined ? { mtu: o.mtu } : {}),
            ...(o.mac ? { mac: o.mac } : {}),
            ...(o.up || o.down ? { up: Boolean(o.up) } : {}),
          },
        }),
      ),
    );
  guest
    .command('add-route <sandbox> <dest>')
    .description("add or replace a guest route (dest 'default' or a CIDR; recorded in the log)")
    .option('--via <gateway>', 'gateway address')
    .option('--dev <name>', 'interface')
    .option('--src <address>', 'preferred source address')
    .action(
      call(
        'guest.updateRoutes',
        (sandboxId: string, dest: string, o: { via?: string; dev?: string; src?: string }) => ({
          sandboxId,
          routes: [
            {
              dest,
              ...(o.via ? { gateway: o.via } : {}),
              ...(o.dev ? { device: o.dev } : {}),
              ...(o.src ? { source: o.src } : {}),
            },
          ],
        }),
      ),
    );
  guest
    .command('set-time <sandbox> [time]')
    .description("set the guest clock (default: this host's time now)")
    .action(
      call('guest.setTime', (sandboxId: string, time?: string) => ({ sandboxId, ...(time ? { time } : {}) })),
    );
  guest
    .command('reseed <sandbox>')
    .description("mix 64 random bytes from this host into the guest's entropy pool")
    .action(call('guest.reseedRandom', (sandboxId: string) => ({ sandboxId })));
  guest
    .command('metrics <sandbox>')
    .description('agent metrics (Prometheus text)')
    .action(async (sandboxId: string) => {
      const r = (await (await api()).call('guest.metrics', { sandboxId })) as { metrics: string };
      if (globals().json) printJson(r);
      else process.stdout.write(r.metrics);
    });
  guest
    .command('copy <sandbox> <src> <dest>')
    .description('copy a host file to an absolute path in the guest')
    .option('--mode <octal>', 'file mode', (v) => Number.parseInt(v, 8))
    .action(async (sandboxId: string, src: string, dest: string, o: { mode?: number }) => {
      const data = await readFile(src);
      const r = await (await api()).call('guest.copyFile', {
        sandboxId,
        path: dest,
        data: data.toString('base64'),
        ...(o.mode !== undefined ? { mode: o.mode } : {}),
      });
      show(globals(), r);
    });

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

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
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
