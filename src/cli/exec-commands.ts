// sandboxctl's exec commands: one per API method of the exec group.
import { execRun, processOf } from './attach.js';
import { type CliContext, collect, int } from './context.js';
import { type LogsOptions, printLogs, withLogFlags } from './logs.js';
import { show } from './output.js';

export function registerExecCommands(ctx: CliContext): void {
  const { program, globals, api, call } = ctx;
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
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
