// sandboxctl's guest commands.
import { readFile } from 'node:fs/promises';
import { type CliContext, collect, int } from './context.js';
import { printJson, show, table } from './output.js';

export function registerGuestCommands(ctx: CliContext): void {
  const { program, globals, api, call } = ctx;
  const guest = program.command('guest').description("calls into a sandbox's guest agent");
  guest
    .command('details <sandbox>')
    .description('agent version, kernel, CPUs, memory')
    .action(call('guest.details', (sandboxId: string) => ({ sandboxId })));
  guest
    .command('interfaces <sandbox>')
    .description('network interfaces')
    .action(
      call(
        'guest.interfaces',
        (sandboxId: string) => ({ sandboxId }),
        (rows: { name: string; mac?: string; mtu?: number; addresses: string[]; up?: boolean }[]) =>
          table(
            ['NAME', 'MAC', 'MTU', 'UP', 'ADDRESSES'],
            rows.map((r) => [r.name, r.mac, r.mtu, r.up, r.addresses.join(' ')]),
          ),
      ),
    );
  guest
    .command('routes <sandbox>')
    .description('routes')
    .action(
      call(
        'guest.routes',
        (sandboxId: string) => ({ sandboxId }),
        (rows: { dest: string; gateway?: string; device?: string; source?: string }[]) =>
          table(
            ['DEST', 'GATEWAY', 'DEVICE', 'SOURCE'],
            rows.map((r) => [r.dest, r.gateway, r.device, r.source]),
          ),
      ),
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
}
