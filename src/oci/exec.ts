// `exec`: an extra process in a running container, with a keeper of its own (its pid is the one --pid-file
// gets, its exit status the process's). The exec is registered (exec.create) and started, then its keeper follows it; the keeper forgets it in the daemon once it ended (runc's callers never delete execs).
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { customAlphabet } from 'nanoid';
import { type ApiProcess, apiProcessOf, type OciProcess } from '../bundle/index.js';
import { joinCgroups } from '../cgroups/index.js';
import type { Ctx } from './context.js';
import { badArgument, RuncError } from './errors.js';
import { keeperExit, spawnKeeper } from './keeper.js';
import { mustLocate } from './lifecycle.js';
import { writeDurably } from './records.js';
import { statusOf } from './state.js';

const shortId = customAlphabet('0123456789abcdefghijklmnopqrstuvwxyz', 12);

export interface ExecOptions {
  readonly process?: string;
  readonly tty?: boolean;
  readonly consoleSocket?: string;
  readonly detach?: boolean;
  readonly pidFile?: string;
  readonly cwd?: string;
  readonly env?: string[];
  readonly user?: string;
  readonly cap?: string[];
}

/** The exec.create process from --process FILE (an OCI `process`) or the arguments and flags. */
export async function execProcess(args: readonly string[], o: ExecOptions): Promise<ApiProcess> {
  let p: OciProcess = {};
  if (o.process) {
    const text = o.process === '-' ? await readStdin() : await readFile(resolve(o.process), 'utf8');
    try {
      p = JSON.parse(text) as OciProcess;
    } catch (err) {
      throw badArgument('--process', `not valid JSON: ${(err as Error).message}`);
    }
  }
  const argv = args.length > 0 ? [...args] : p.args;
  if (!argv || argv.length === 0) throw badArgument('args', 'exec needs a command (or --process with args)');
  const process = apiProcessOf({
    ...p,
    args: argv,
    env: [...(p.env ?? []), ...(o.env ?? [])],
    terminal: o.tty ?? p.terminal ?? false,
    ...(o.cwd ? { cwd: o.cwd } : {}),
  });
  if (o.user) process.user = o.user;
  return process;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function execIn(ctx: Ctx, id: string, args: readonly string[], o: ExecOptions): Promise<number> {
  const found = await mustLocate(ctx, id);
  const status = statusOf(found.view?.state);
  if (status !== 'running') throw new RuncError('InvalidState', `cannot exec in a ${status} container`);
  const process = await execProcess(args, o);
  const ref = { sandboxId: found.sandboxId, containerId: id, execId: `exec-${shortId()}` };
  // Started before its keeper follows it: the guest keeps a process's output from its first byte, but knows
  // an exec only once it started (a follow of a registered exec ends at once).
  await ctx.client.call('exec.create', { ...ref, process });
  let keeper: Awaited<ReturnType<typeof spawnKeeper>> | undefined;
  try {
    await ctx.client.call('exec.start', ref);
    keeper = await spawnKeeper({
      socket: ctx.socket,
      sandboxId: ref.sandboxId,
      containerId: id,
      execId: ref.execId,
      deleteExec: true,
      ...(o.consoleSocket ? { consoleSocket: resolve(o.consoleSocket) } : {}),
      detached: o.detach === true,
    });
  } catch (err) {
    await ctx.client.call('exec.kill', { ...ref, signal: 'SIGKILL' }).catch(() => undefined);
    await ctx.client.call('exec.wait', { ...ref, timeoutMs: 10_000 }).catch(() => undefined);
    await ctx.client.call('exec.delete', ref).catch(() => undefined);
    throw err;
  }
  // An exec's keeper is in the container's host cgroup too, as runc's exec joins the container's cgroup.
  const hostCgroup = found.record?.hostCgroup;
  if (hostCgroup && keeper.pid) {
    await joinCgroups(hostCgroup, keeper.pid).catch((err: Error) =>
      ctx.log.warn({ ...ref, err: err.message }, 'exec keeper did not join the host cgroup'),
    );
  }
  if (o.pidFile) await writeDurably(resolve(o.pidFile), String(keeper.pid), 0o644);
  ctx.log.info({ ...ref, keeperPid: keeper.pid }, 'exec started');
  if (o.detach) {
    keeper.unref();
    return 0;
  }
  const ignore = () => undefined;
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) globalThis.process.on(s, ignore);
  return keeperExit(keeper);
}
