// Reads and changes a network namespace from the host namespace: every command runs as
// `nsenter --net=PATH ip|tc …`, so the daemon itself never leaves its own namespace.
import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { HypervisorError, InvalidArgument } from '../errors/index.js';
import { readNetnsDns } from './dns.js';
import { parseIngressFilters, parseIngressQdiscs, parseLinks, parseRoutes } from './parse.js';
import { NETNS_FIELD, planAttach, planDetach, planRepair } from './plan.js';
import type {
  IngressFilter,
  NetnsChange,
  NetnsCommand,
  NetnsState,
  NetnsWiring,
  WiredLink,
} from './types.js';

const exec = promisify(execFile);
const COMMAND_TIMEOUT_MS = 10_000;

/** The argv prefix that runs a program inside the namespace at `path` (QEMU is started with it too). */
export function inNetns(path: string): string[] {
  return ['nsenter', `--net=${path}`];
}

async function runIn(path: string, command: NetnsCommand): Promise<string> {
  const [bin, ...args] = [...inNetns(path), ...command.argv];
  try {
    const { stdout } = await exec(bin as string, args, { timeout: COMMAND_TIMEOUT_MS, maxBuffer: 16 << 20 });
    return stdout;
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new HypervisorError(
      command.step,
      stderr || (err as Error).message,
      { netns: path, argv: command.argv.join(' ') },
      err,
    );
  }
}

/**
 * Fails with InvalidArgument(config.network.path), changing nothing, unless `path` is an absolute path to a
 * network namespace other than the daemon's own (wiring the host's own links into a VM would cut the host off).
 */
export async function checkNetnsPath(path: string): Promise<void> {
  if (!isAbsolute(path)) throw new InvalidArgument(NETNS_FIELD, `${path} is not an absolute path`);
  const [target, own] = await Promise.all([
    stat(path).catch(() => undefined),
    stat('/proc/self/ns/net').catch(() => undefined),
  ]);
  if (!target) throw new InvalidArgument(NETNS_FIELD, `${path} does not exist`);
  if (own && target.ino === own.ino && target.dev === own.dev)
    throw new InvalidArgument(NETNS_FIELD, `${path} is the daemon's own network namespace`);
  try {
    await runIn(path, { step: 'nsenter', argv: ['true'] });
  } catch {
    throw new InvalidArgument(NETNS_FIELD, `${path} is not a network namespace`);
  }
}

/** Links (with addresses), routes and ingress filters of the namespace at `path`. Throws HypervisorError. */
export async function readNetns(path: string): Promise<NetnsState> {
  const [links, routes4, routes6, qdiscs] = await Promise.all([
    runIn(path, { step: 'ip addr show', argv: ['ip', '-d', '-j', 'addr', 'show'] }),
    runIn(path, { step: 'ip route show', argv: ['ip', '-j', '-4', 'route', 'show'] }),
    runIn(path, { step: 'ip route show', argv: ['ip', '-j', '-6', 'route', 'show'] }),
    runIn(path, { step: 'tc qdisc show', argv: ['tc', '-j', 'qdisc', 'show'] }),
  ]);
  const ingress: Record<string, readonly IngressFilter[]> = {};
  for (const dev of parseIngressQdiscs(qdiscs)) {
    const text = await runIn(path, {
      step: 'tc filter show',
      argv: ['tc', '-j', 'filter', 'show', 'dev', dev, 'ingress'],
    });
    ingress[dev] = parseIngressFilters(text);
  }
  return {
    links: parseLinks(links),
    routes: [...parseRoutes(routes4, 4), ...parseRoutes(routes6, 6)],
    ingress,
  };
}

/**
 * Wires `sandboxId` into the namespace: per veth a tap and tc redirects both ways; what exists already is
 * kept (a retry or a recovery never doubles it). On failure undoes what it made and throws.
 */
export async function attachNetns(path: string, sandboxId: string, logger: Logger): Promise<NetnsWiring> {
  await checkNetnsPath(path);
  const [state, dns] = await Promise.all([readNetns(path), readNetnsDns(path)]);
  const planned = planAttach(state, sandboxId, path);
  const { commands } = planned;
  const wiring: NetnsWiring = dns ? { ...planned.wiring, dns } : planned.wiring;
  try {
    for (const command of commands) await runIn(path, command);
  } catch (err) {
    await detachNetns(path, sandboxId, logger).catch((undoErr) =>
      logger.warn({ sandboxId, netns: path, err: undoErr }, 'undoing a failed netns attach failed'),
    );
    throw err;
  }
  logger.info(
    { sandboxId, netns: path, links: wiring.links.map((l) => `${l.veth}<->${l.tap}`), ran: commands.length },
    'sandbox wired into its network namespace',
  );
  return wiring;
}

/** Whether the namespace at `path` still exists (a deleted one took our taps and filters with it). */
async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Runs `commands` in order and returns the changes made, also when one fails: the error (HypervisorError) is
 * thrown with the changes made before it as `made`, so the caller can record them.
 */
export async function runPlan(path: string, commands: readonly NetnsCommand[]): Promise<NetnsChange[]> {
  const made: NetnsChange[] = [];
  for (const command of commands) {
    try {
      await runIn(path, command);
    } catch (err) {
      Object.assign(err as object, { made });
      throw err;
    }
    made.push(...(command.changes ?? []));
  }
  return made;
}

/** The changes a failed runPlan (or a step built on it) made before it failed: none for any other error. */
export function changesMadeBefore(err: unknown): NetnsChange[] {
  const made = (err as { made?: unknown } | undefined)?.made;
  return Array.isArray(made) ? (made as NetnsChange[]) : [];
}

/**
 * Removes every tap and redirect of `sandboxId` from the namespace, and nothing else; a namespace that is gone
 * took them with it. Idempotent: returns what it removed (empty when nothing of ours was left). Throws
 * HypervisorError when a command fails.
 */
export async function detachNetns(path: string, sandboxId: string, logger: Logger): Promise<NetnsChange[]> {
  if (!(await exists(path))) return [];
  const commands = planDetach(await readNetns(path), sandboxId);
  const made = await runPlan(path, commands);
  if (commands.length > 0)
    logger.info(
      { sandboxId, netns: path, ran: commands.length },
      'sandbox unwired from its network namespace',
    );
  return made;
}

/**
 * Makes again what is missing of a running sandbox's recorded `links` (taps, qdiscs, filters), keeping what is
 * there: recovery after a crash. Returns what it made (empty when all was in place; also when the namespace is
 * gone). Throws HypervisorError, or InvalidArgument when a veth is now redirected elsewhere.
 */
export async function repairNetns(
  path: string,
  sandboxId: string,
  links: readonly WiredLink[],
  logger: Logger,
): Promise<NetnsChange[]> {
  if (!(await exists(path))) return [];
  const made = await runPlan(path, planRepair(await readNetns(path), links, path));
  if (made.length > 0) logger.info({ sandboxId, netns: path, made }, 'missing netns wiring made again');
  return made;
}
