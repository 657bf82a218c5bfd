// `sandboxctl template build|ls|rm`: the VM templates sandboxes may be restored from (issue 18).
import { InvalidArgumentError } from 'commander';
import type { CliContext } from './context.js';
import { printJson, shortTime, show, table } from './output.js';

interface TemplateRow {
  id: string;
  identity: { vcpus: number; memoryMiB: number; network: string; imageVersion: string; qemuVersion: string };
  stateBytes: number;
  builtAt: string;
  bootMs: number;
  saveMs: number;
}

const positiveInt = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${v} is not a positive integer`);
  return n;
};

function renderTemplates(rows: TemplateRow[]): string {
  return table(
    ['ID', 'VCPUS', 'MEMORY', 'NETWORK', 'IMAGE', 'QEMU', 'STATE', 'BUILT'],
    rows.map((t) => [
      t.id,
      t.identity.vcpus,
      `${t.identity.memoryMiB} MiB`,
      t.identity.network,
      t.identity.imageVersion,
      t.identity.qemuVersion,
      `${(t.stateBytes / 1e6).toFixed(1)} MB`,
      shortTime(t.builtAt),
    ]),
  );
}

/** Registers `template …`. */
export function registerTemplateCommands({ program, globals, api }: CliContext): void {
  const template = program
    .command('template')
    .description('VM templates: booted VMs saved in the image cache that sandboxes start from');
  template
    .command('build')
    .description('boot, pause and save the template of a VM shape (kept if already built, unless --force)')
    .option('--vcpus <n>', 'vCPUs at boot', positiveInt)
    .option('--max-vcpus <n>', 'vCPU hotplug limit', positiveInt)
    .option('--memory <MiB>', 'memory at boot in MiB', positiveInt)
    .option('--max-memory <MiB>', 'memory hotplug limit in MiB', positiveInt)
    .option('--network <mode>', "'none' (default) or 'user'")
    .option('--force', 'rebuild even if the template exists', false)
    .action(
      async (o: {
        vcpus?: number;
        maxVcpus?: number;
        memory?: number;
        maxMemory?: number;
        network?: string;
        force: boolean;
      }) => {
        const result = await (await api()).call<{ template: TemplateRow; built: boolean }>('template.build', {
          ...(o.vcpus !== undefined ? { vcpus: o.vcpus } : {}),
          ...(o.maxVcpus !== undefined ? { maxVcpus: o.maxVcpus } : {}),
          ...(o.memory !== undefined ? { memoryMiB: o.memory } : {}),
          ...(o.maxMemory !== undefined ? { maxMemoryMiB: o.maxMemory } : {}),
          ...(o.network !== undefined ? { network: o.network } : {}),
          ...(o.force ? { force: true } : {}),
        });
        if (globals().json) printJson(result);
        else {
          const t = result.template;
          const how = result.built ? `built (boot ${t.bootMs} ms, save ${t.saveMs} ms)` : 'already built';
          process.stdout.write(`${t.id} ${how}\n`);
        }
      },
    );
  template
    .command('ls')
    .description('list the templates')
    .action(async () => {
      const { templates } = await (await api()).call<{ templates: TemplateRow[] }>('template.list', {});
      if (globals().json) show(globals(), { templates });
      else show(globals(), templates, renderTemplates);
    });
  template
    .command('rm <id>')
    .description('remove a template')
    .action(async (id: string) => {
      show(globals(), await (await api()).call('template.remove', { id }));
    });
}
