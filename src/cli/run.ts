// `sandboxctl run`: a sandbox and a container from a bundle, output streamed, the container's exit code returned.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { customAlphabet } from 'nanoid';
import { type ApiClient, validateBundle } from '../api/index.js';
import { copyStdin, followOutput, followWindowSize, terminalSize } from './attach.js';
import { EXIT } from './exit-codes.js';
import { catchInterrupts, Interrupted, signalExitCode } from './interrupts.js';
import { networkConfig, type PortMappingArg, type VolumeArg } from './network.js';
import { withBootProgress } from './progress.js';

export interface RunOptions {
  readonly rm?: boolean;
  readonly name?: string;
  readonly vcpus?: number;
  readonly memory?: number;
  readonly network?: string;
  readonly netns?: string;
  readonly publish?: PortMappingArg[];
  readonly volume?: VolumeArg[];
  readonly json: boolean;
  readonly quiet?: boolean;
  /** Copy stdin to the container's process (end of input closes its stdin). */
  readonly interactive?: boolean;
  /** Run it on a terminal sized like ours (raw mode with `interactive`). */
  readonly tty?: boolean;
}

const shortId = customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', 8);

interface ExitStatus {
  exitCode: number;
  signal?: string;
  oomKilled?: boolean;
}

async function bundleProcess(bundle: string): Promise<{ args?: string[]; env?: string[]; cwd?: string }> {
  try {
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as {
      process?: { args?: string[]; env?: string[]; cwd?: string };
    };
    return {
      ...(spec.process?.args ? { args: spec.process.args } : {}),
      ...(spec.process?.env ? { env: spec.process.env } : {}),
      ...(spec.process?.cwd ? { cwd: spec.process.cwd } : {}),
    };
  } catch {
    return {};
  }
}

/** How long a container may take to end after a signal we forwarded, before it is SIGKILLed. */
const signalGraceMs = 3000;

/**
 * Runs `cmd` (or the bundle's own process) in a new sandbox; resolves with the exit code to use.
 * Output goes to this process's stdout/stderr as it arrives. With `rm`, the sandbox is deleted after.
 *
 * SIGINT, SIGTERM and SIGHUP are caught for the whole run. Before the container runs (the boot included)
 * they cancel the run: with `rm` the sandbox is deleted (force: a boot in flight is aborted), without it the
 * sandbox stays and we say how to remove it; the exit code is 128+signal, as docker's. Once the container
 * runs, the signal goes to it; one that does not end it within a grace (or a second signal) gets SIGKILL.
 */
export async function runContainer(
  client: ApiClient,
  bundleArg: string,
  cmd: string[],
  o: RunOptions,
): Promise<number> {
  const bundle = resolve(bundleArg);
  const sandboxId = o.name ?? `run-${shortId()}`;
  const containerId = 'main';
  // Progress and notes: silenced by -q. Failures: never (a run that fails says why, -q or not).
  const note = (line: string) => {
    if (!o.quiet) process.stderr.write(`${line}\n`);
  };
  const fail = (line: string) => process.stderr.write(`${line}\n`);
  const interrupts = catchInterrupts();
  let created = false;
  let running = false;
  let killed = false;
  const kill = (signal: string) =>
    client.call('container.kill', { sandboxId, id: containerId, signal }).catch(() => undefined);
  interrupts.onSignal((signal, count) => {
    if (!running) return;
    if (count > 1 || signal === 'SIGHUP') {
      killed = true;
      void kill('SIGKILL');
      return;
    }
    void kill(signal);
    setTimeout(() => {
      killed = true;
      void kill('SIGKILL');
    }, signalGraceMs).unref();
  });
  const removal = `sandboxctl sandbox delete --force ${sandboxId}`;
  const cleanup = async () => {
    if (!created) return;
    if (!o.rm) {
      if (interrupts.received) note(`run: sandbox ${sandboxId} kept; \`${removal}\` removes it`);
      return;
    }
    try {
      await client.call('sandbox.delete', { id: sandboxId, force: true });
      note(`run: sandbox ${sandboxId} deleted`);
    } catch (err) {
      fail(
        `run: could not delete sandbox ${sandboxId}: ${(err as Error).message}; \`${removal}\` removes it`,
      );
    }
  };
  let stdin: { stop(): void } | undefined;
  try {
    // Refuse a bad bundle before paying for a VM boot (the daemon checks it again).
    await validateBundle(bundle, 'bundle');
    const config = {
      ...(o.vcpus !== undefined ? { vcpus: o.vcpus } : {}),
      ...(o.memory !== undefined ? { memoryMiB: o.memory } : {}),
      ...networkConfig(o),
    };
    // The create is awaited even when a signal comes meanwhile: whether the sandbox exists decides the cleanup.
    await client.call('sandbox.create', { id: sandboxId, config });
    created = true;
    await interrupts.race(
      withBootProgress(
        `booting sandbox ${sandboxId}`,
        () => client.call('sandbox.start', { id: sandboxId }),
        !o.quiet,
      ),
    );
    // A command, or a terminal, means a process override: the bundle's own args, env and cwd fill it in.
    const size = o.tty === true ? terminalSize() : undefined;
    const processSpec =
      cmd.length > 0 || o.tty
        ? {
            ...(await bundleProcess(bundle)),
            ...(cmd.length > 0 ? { args: cmd } : {}),
            ...(o.tty ? { terminal: true } : {}),
            ...(size ? { consoleSize: size } : {}),
          }
        : undefined;
    await interrupts.race(
      client.call('container.create', {
        sandboxId,
        id: containerId,
        bundle,
        ...(processSpec ? { process: processSpec } : {}),
        ...(o.volume ? { mounts: o.volume } : {}),
      }),
    );

    const output = await interrupts.race(followOutput(client, { sandboxId, containerId, execId: '' }));

    await interrupts.race(client.call('container.start', { sandboxId, id: containerId }));
    running = true;
    stdin = o.interactive
      ? copyStdin(client, { sandboxId, containerId, execId: '' }, o.tty === true)
      : undefined;
    if (size) followWindowSize(client, { sandboxId, containerId, execId: '' });
    const status = (await client.call('container.wait', { sandboxId, id: containerId })) as ExitStatus;
    // Output may trail the exit a little; don't wait forever for it.
    await Promise.race([output.ended, new Promise((r) => setTimeout(r, 5000).unref())]);
    output.stop();
    if (status.oomKilled) note(`run: container was OOM-killed`);
    if (status.signal) note(`run: container killed by ${status.signal}`);
    if (o.rm) await client.call('sandbox.stop', { id: sandboxId }).catch(() => undefined);
    await cleanup();
    if (o.json) process.stdout.write(`${JSON.stringify({ sandboxId, containerId, ...status })}\n`);
    // Our SIGKILL is not the container's doing: report the signal that made us send it.
    return killed && interrupts.received ? signalExitCode(interrupts.received) : status.exitCode;
  } catch (err) {
    if (err instanceof Interrupted) note(`run: ${err.message}; cancelling`);
    else fail(`run: ${(err as Error).message}`);
    await cleanup();
    return interrupts.received ? signalExitCode(interrupts.received) : EXIT.RUN_FAILED;
  } finally {
    stdin?.stop();
    interrupts.dispose();
  }
}
