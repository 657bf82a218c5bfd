// Creating and starting a container: the bundle's spec rewritten for the guest (cgroup, shared pidns, resolv.conf,
// resources, start gate), `crun run` spawned and held at the gate until StartContainer opens it.
import { constants as fsConstants, openSync, writeSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { isAbsolute, join, normalize, resolve } from 'node:path';
import type { WireProcessSpec, WireResources } from '../agent/index.js';
import { AlreadyExists, Internal, InvalidArgument, InvalidState, Timeout } from '../errors/index.js';
import { sleep } from '../timing/index.js';
import {
  type Container,
  checkId,
  closeGate,
  forgetContainer,
  type GuestContext,
  type GuestPaths,
} from './container-record.js';
import { CRUN_WAIT_MS, spawnMonitored } from './crun.js';
import { watchOom } from './exits.js';
import {
  addSandboxMount,
  addStartGate,
  applySpecResources,
  type OciLinux,
  readBundleSpec,
} from './oci-spec.js';
import { GuestProcess, runCommand } from './process.js';

/** What CreateSandbox set for every container created after it. */
export interface SandboxSettings {
  /** Bytes each stream keeps while nobody reads. */
  readonly outputCapacity: number;
  /** Kata's sandbox pidns: containers created after this see each other's processes. */
  readonly sharedPidNs: boolean;
  /** The sandbox was given DNS servers: every container sees its resolv.conf. */
  readonly sandboxResolvConf: boolean;
}

export interface CreateRequest {
  readonly id: string;
  /** The bundle dir, relative to the sandbox share. */
  readonly bundle: string;
  readonly processOverride: WireProcessSpec | null;
  readonly resources: WireResources | null;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Bundle dir inside the share; traversal refused. */
function bundleDirOf(paths: GuestPaths, bundle: string): string {
  if (bundle === '' || isAbsolute(bundle) || normalize(bundle).split('/').includes('..')) {
    throw new InvalidArgument('bundle', 'must be a relative path inside the sandbox share');
  }
  return resolve(paths.sharedDir, bundle);
}

/**
 * Creates the container in `containers` and resolves its init pid once crun has reported it, with the container
 * held at its start gate. Throws AlreadyExists, InvalidArgument (id, bundle, spec), Internal (the crun step) or
 * Timeout; a container that failed to create is not left in the table.
 */
export async function createContainer(
  context: GuestContext,
  containers: Map<string, Container>,
  settings: SandboxSettings,
  request: CreateRequest,
): Promise<number> {
  const { paths, logger } = context;
  const { id, bundle, processOverride, resources } = request;
  checkId('containerId', id);
  if (containers.has(id)) throw new AlreadyExists('container', id);
  const bundleDir = bundleDirOf(paths, bundle);
  const spec = await readBundleSpec(bundleDir, bundle, processOverride);

  const stateDir = join(paths.stateDir, 'containers', id);
  const parentCgroup = join(paths.cgroupRoot, paths.cgroupParent);
  const cgroupDir = join(parentCgroup, id);
  const leafCgroupDir = join(cgroupDir, 'ctr');
  await rm(stateDir, { recursive: true, force: true });
  await mkdir(stateDir, { recursive: true });
  await mkdir(cgroupDir, { recursive: true });
  // The container's own cgroup sits one level down, so ours may delegate controllers to it.
  await writeFile(join(cgroupDir, 'cgroup.subtree_control'), '+cpu +memory +pids +io').catch((err) =>
    logger.warn({ err, containerId: id, step: 'cgroup delegate' }, 'cannot enable controllers'),
  );

  if (settings.sandboxResolvConf) addSandboxMount(spec, '/etc/resolv.conf');
  spec.linux ??= {};
  spec.linux.cgroupsPath = `/${paths.cgroupParent}/${id}/ctr`;
  if (settings.sharedPidNs) joinSandboxPidNs(containers, spec.linux);
  if (resources) applySpecResources(spec.linux, resources);

  const stateFile = join(stateDir, 'created.json');
  const gate = join(stateDir, 'start.fifo');
  const startedFile = join(stateDir, 'started');
  await runCommand('mkfifo', [gate]).then(({ code, output }) => {
    if (code !== 0) throw new Internal('mkfifo', output, { containerId: id });
  });
  addStartGate(spec, paths.shell, stateFile, gate, startedFile);
  const configPath = join(stateDir, 'config.json');
  await writeFile(configPath, JSON.stringify(spec));

  const container: Container = {
    id,
    status: 'created',
    bundleDir,
    stateDir,
    cgroupDir,
    leafCgroupDir,
    spec,
    init: new GuestProcess('', settings.outputCapacity),
    execs: new Map(),
    // O_RDWR keeps the FIFO's buffer alive whether or not the hook has opened it yet.
    gateFd: openSync(gate, fsConstants.O_RDWR | fsConstants.O_NONBLOCK),
    oomSeen: 0,
    stopWatching: undefined,
  };
  containers.set(id, container);
  const pidFile = join(stateDir, 'init.pid');
  let consoleSocket: string;
  try {
    consoleSocket = spec.process.terminal
      ? await context.openTerminal(container, container.init, spec.process.consoleSize)
      : '';
  } catch (err) {
    forgetContainer(containers, container);
    throw err;
  }
  const child = spawnMonitored(context, container, container.init, [
    'run',
    ...(consoleSocket ? ['--console-socket', consoleSocket] : []),
    '--bundle',
    bundleDir,
    '--config',
    configPath,
    '--pid-file',
    pidFile,
    id,
  ]);
  const deadline = Date.now() + CRUN_WAIT_MS;
  for (;;) {
    const text = await readFile(stateFile, 'utf8').catch(() => undefined);
    if (text !== undefined) {
      const state = JSON.parse(text) as { pid?: number };
      container.init.pid = state.pid ?? 0;
      break;
    }
    if (container.init.exit || child.exitCode !== null) {
      await container.init.exited;
      const output = container.init.stderr.readFrom(0).data.toString('utf8').trim();
      forgetContainer(containers, container);
      throw new Internal('crun run', output || `exited ${container.init.exit?.exitCode}`, {
        containerId: id,
      });
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      forgetContainer(containers, container);
      throw new Timeout('crun create', CRUN_WAIT_MS, { containerId: id });
    }
    await sleep(20);
  }
  container.init.createdAt = performance.now();
  watchOom(context, container);
  logger.info({ containerId: id, pid: container.init.pid }, 'container created');
  return container.init.pid;
}

/** Opens the start gate of a created container and waits for the hook to pass it; throws InvalidState or Timeout. */
export async function startContainer(context: GuestContext, container: Container): Promise<void> {
  const { id } = container;
  if (container.status !== 'created') throw new InvalidState('container', id, container.status, 'start');
  const fd = container.gateFd;
  if (fd === undefined) throw new InvalidState('container', id, 'stopped', 'start');
  container.init.startedAt = performance.now();
  writeSync(fd, '\n');
  const startedFile = join(container.stateDir, 'started');
  const deadline = Date.now() + CRUN_WAIT_MS;
  while (!(await exists(startedFile))) {
    if (container.init.exit) break;
    if (Date.now() > deadline) throw new Timeout('crun start gate', CRUN_WAIT_MS, { containerId: id });
    await sleep(10);
  }
  closeGate(container);
  container.init.announce();
  // A program crun could not execute still started, as far as the host can tell: its exit (126/127) follows.
  if (container.init.exit && !container.init.notRun)
    throw new InvalidState('container', id, 'stopped', 'start');
  container.status = 'running';
  context.logger.info({ containerId: id }, 'container started');
}

/** With a shared pidns, a new container joins the pid namespace of the oldest container still running. */
function joinSandboxPidNs(containers: Map<string, Container>, linux: OciLinux): void {
  const host = [...containers.values()].find((c) => !c.init.exit && c.init.pid > 0);
  if (!host) return;
  const namespaces = Array.isArray(linux.namespaces)
    ? (linux.namespaces as { type: string; path?: string }[])
    : [];
  linux.namespaces = [
    ...namespaces.filter((ns) => ns.type !== 'pid'),
    { type: 'pid', path: `/proc/${host.init.pid}/ns/pid` },
  ];
}
