// `sandboxctl run`: a sandbox and a container from a bundle, output streamed, the container's exit code returned.
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { customAlphabet } from 'nanoid';
import { type ApiClient, validateBundle } from '../api/index.js';
import { copyStdin, followOutput, followWindowSize } from './attach.js';
import { EXIT } from './exit-codes.js';
import { networkConfig, type PortMappingArg, type VolumeArg } from './network.js';
import { withBootProgress } from './progress.js';

export interface RunOptions {
  readonly rm?: boolean;
  readonly name?: string;
  readonly vcpus?: number;
  readonly memory?: number;
  readonly network?: string;
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

/**
 * Runs `cmd` (or the bundle's own process) in a new sandbox; resolves with the exit code to use.
 * Output goes to this process's stdout/stderr as it arrives. With `rm`, the sandbox is deleted after.
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
  const note = (line: string) => {
    if (!o.quiet) process.stderr.write(`${line}\n`);
  };
  let created = false;
  const cleanup = async () => {
    if (!o.rm || !created) return;
    await client.call('sandbox.delete', { id: sandboxId, force: true }).catch((err: Error) => {
      note(`run: could not delete sandbox ${sandboxId}: ${err.message}`);
    });
    note(`run: sandbox ${sandboxId} deleted`);
  };
  const interrupted = () => {
    void client
      .call('container.kill', { sandboxId, id: containerId, signal: 'SIGKILL' })
      .catch(() => undefined);
  };
  process.once('SIGINT', interrupted);
  let stdin: { stop(): void } | undefined;
  try {
    // Refuse a bad bundle before paying for a VM boot (the daemon checks it again).
    await validateBundle(bundle, 'bundle');
    const config = {
      ...(o.vcpus !== undefined ? { vcpus: o.vcpus } : {}),
      ...(o.memory !== undefined ? { memoryMiB: o.memory } : {}),
      ...networkConfig(o),
    };
    await client.call('sandbox.create', { id: sandboxId, config });
    created = true;
    await withBootProgress(
      `booting sandbox ${sandboxId}`,
      () => client.call('sandbox.start', { id: sandboxId }),
      !o.quiet,
    );
    // A command, or a terminal, means a process override: the bundle's own args, env and cwd fill it in.
    const onTerminal = o.tty === true && process.stdout.isTTY === true;
    const processSpec =
      cmd.length > 0 || o.tty
        ? {
            ...(await bundleProcess(bundle)),
            ...(cmd.length > 0 ? { args: cmd } : {}),
            ...(o.tty ? { terminal: true } : {}),
            ...(onTerminal
              ? { consoleSize: { height: process.stdout.rows, width: process.stdout.columns } }
              : {}),
          }
        : undefined;
    await client.call('container.create', {
      sandboxId,
      id: containerId,
      bundle,
      ...(processSpec ? { process: processSpec } : {}),
      ...(o.volume ? { mounts: o.volume } : {}),
    });

    const output = await followOutput(client, { sandboxId, containerId, execId: '' });

    await client.call('container.start', { sandboxId, id: containerId });
    stdin = o.interactive
      ? copyStdin(client, { sandboxId, containerId, execId: '' }, o.tty === true)
      : undefined;
    if (onTerminal) followWindowSize(client, { sandboxId, containerId, execId: '' });
    const status = (await client.call('container.wait', { sandboxId, id: containerId })) as ExitStatus;
    // Output may trail the exit a little; don't wait forever for it.
    await Promise.race([output.ended, new Promise((r) => setTimeout(r, 5000).unref())]);
    output.stop();
    if (status.oomKilled) note(`run: container was OOM-killed`);
    if (status.signal) note(`run: container killed by ${status.signal}`);
    if (o.rm) await client.call('sandbox.stop', { id: sandboxId }).catch(() => undefined);
    await cleanup();
    if (o.json) process.stdout.write(`${JSON.stringify({ sandboxId, containerId, ...status })}\n`);
    return status.exitCode;
  } catch (err) {
    note(`run: ${(err as Error).message}`);
    await cleanup();
    return EXIT.RUN_FAILED;
  } finally {
    stdin?.stop();
    process.off('SIGINT', interrupted);
  }
}
