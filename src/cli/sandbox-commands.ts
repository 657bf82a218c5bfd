// sandboxctl's sandbox commands: one per API method of the sandbox group.
import { InvalidArgument } from '../errors/index.js';
import { type CliContext, collect, int } from './context.js';
import { collectPort, dnsConfig, NETNS_HELP, networkConfig, type PortMappingArg } from './network.js';
import { shortTime, show, table } from './output.js';
import { withBootProgress } from './progress.js';

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

export function registerSandboxCommands(ctx: CliContext): void {
  const { program, globals, api, call } = ctx;
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
    .option('--dns-search <domain>', 'DNS search domain (repeatable)', collect)
    .option('--dns-option <opt>', 'resolv.conf option, e.g. ndots:5 (repeatable)', collect)
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
          dnsSearch?: string[];
          dnsOption?: string[];
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
          ...dnsConfig(o),
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
    .action(call('sandbox.stats', (id: string) => ({ id }), renderSandboxStats));
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
    .command('network-refresh <id>')
    .description('plug in NICs for veths added to a netns sandbox’s namespace, unplug those of veths gone')
    .action(call('sandbox.networkRefresh', (id: string) => ({ id })));
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
      call('sandbox.list', (o: { state?: string }) => (o.state ? { state: o.state } : {}), sandboxTable),
    );
}
