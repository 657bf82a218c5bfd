// Commands on containers: create, start, kill, delete, pause, resume, update, stats, ps, wait.
import type { ContainerResources, ContainerStats, ExitStatus, ProcessInfo } from '../../agent/index.js';
import { translateForGuest, validateBundle } from '../../bundle/index.js';
import { AlreadyExists, ConcurrencyConflict, InvalidState } from '../../errors/index.js';
import { initialSnapshot } from '../../machines/index.js';
import { ContainerActor, lifeKey } from '../entity.js';
import { checkContainerSources } from '../host-paths.js';
import type { Kernel } from '../kernel.js';
import type { ContainerView, CreateContainerParams } from '../types.js';
import { containerView } from '../views.js';
import { changeAndWait, commandAndWait, inTurn, lifeData, settledAs } from './common.js';
import { decide } from './decide.js';

export async function createContainer(k: Kernel, params: CreateContainerParams): Promise<ContainerView> {
  const by = k.open('container.create');
  const s = k.sandbox(params.sandboxId);
  decide('container.create', { sandbox: s });
  if (s.containers.has(params.id)) throw new AlreadyExists('container', params.id, { sandboxId: s.id });
  // The id is taken now; commands for it wait until this create completed or failed (its whole turn).
  const key = lifeKey.container(s.id, s.incarnation, params.id);
  const incarnation = k.lives.next(key);
  const c = new ContainerActor(s, params.id, initialSnapshot('container'), incarnation);
  s.containers.set(params.id, c);
  return c.admit(async () => {
    try {
      // A bundle the VM cannot run, or host paths that reach the state dir, are refused before anything
      // is recorded (the effect reads the bundle again, and binds only what it checks once more).
      const bundle = await validateBundle(params.bundle, 'bundle');
      const translation = translateForGuest(bundle.spec, bundle.path);
      await checkContainerSources(k.guard, translation, params.mounts);
      const { annotations } = translation;
      const terminal = params.process?.terminal ?? bundle.spec.process?.terminal === true;
      const data = {
        sandboxId: s.id,
        containerId: params.id,
        ...lifeData(incarnation),
        ...(s.incarnation > 1 ? { sandboxIncarnation: s.incarnation } : {}),
        bundle: bundle.path,
        ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
        ...(terminal ? { terminal } : {}),
        ...(params.process ? { process: params.process } : {}),
        ...(params.resources ? { resources: params.resources } : {}),
        ...(params.mounts && params.mounts.length > 0 ? { mounts: params.mounts } : {}),
      };
      c.lastError = undefined;
      await k.record(c, { type: 'ContainerCreateRequested', data, correlationId: by }, { command: 'create' });
      await settledAs(c, 'create', ['creating'], ['created']);
    } catch (err) {
      if (c.state === 'absent') s.containers.delete(params.id);
      if (err instanceof ConcurrencyConflict)
        throw new AlreadyExists('container', params.id, { sandboxId: s.id });
      throw err;
    } finally {
      if (c.version > 0) k.lives.note(key, incarnation);
    }
    return containerView(c);
  });
}

export async function startContainer(k: Kernel, sandboxId: string, id: string): Promise<ContainerView> {
  const by = k.open('container.start');
  const c = k.containerEntry(sandboxId, id);
  await commandAndWait(
    k,
    c,
    'start',
    { type: 'ContainerStartRequested', data: {}, correlationId: by },
    ['starting'],
    // A short-lived init may have ended before the start's reply came back: that start succeeded.
    ['running', 'paused', 'stopped'],
    () => decide('container.start', { sandbox: c.sandbox }),
  );
  return containerView(c);
}

export async function killContainer(
  k: Kernel,
  sandboxId: string,
  id: string,
  signal: string,
  all = false,
): Promise<void> {
  k.open('container.kill');
  const c = k.containerEntry(sandboxId, id);
  await inTurn(c, async () => {
    // Not a created container: its init waits at the start gate, where a signal changes nothing the log could
    // say (and breaks the later start). Start it, or delete it.
    decide('container.kill', { sandbox: c.sandbox, container: c }, `kill ${signal}`);
    await k.call(k.agent.signalProcess(sandboxId, id, '', signal, all), 'signalProcess');
  });
}

/** Resolves with the container's last view: how and when its init ended, if it did before the delete. */
export async function deleteContainer(
  k: Kernel,
  sandboxId: string,
  id: string,
  options: { force?: boolean } = {},
): Promise<ContainerView> {
  const by = k.open('container.delete');
  const c = k.containerEntry(sandboxId, id);
  const force = options.force === true;
  await commandAndWait(
    k,
    c,
    force ? 'delete --force' : 'delete',
    { type: 'ContainerDeleteRequested', data: { force }, correlationId: by },
    ['deleting'],
    ['deleted'],
    () => {
      // A frozen guest cannot remove anything; removing only the host side would leave it running there.
      if (c.sandbox.is('frozen')) {
        throw new InvalidState('sandbox', sandboxId, c.sandbox.state, 'container.delete');
      }
    },
  );
  return containerView(c);
}

export async function pauseContainer(k: Kernel, sandboxId: string, id: string): Promise<ContainerView> {
  return freezeCommand(k, sandboxId, id, 'pause');
}

export async function resumeContainer(k: Kernel, sandboxId: string, id: string): Promise<ContainerView> {
  return freezeCommand(k, sandboxId, id, 'resume');
}

async function freezeCommand(
  k: Kernel,
  sandboxId: string,
  id: string,
  command: 'pause' | 'resume',
): Promise<ContainerView> {
  const by = k.open(`container.${command}`);
  const c = k.containerEntry(sandboxId, id);
  const [type, via, to] =
    command === 'pause'
      ? ['ContainerPauseRequested', 'pausing', 'paused']
      : ['ContainerResumeRequested', 'resuming', 'running'];
  await commandAndWait(k, c, command, { type, data: {}, correlationId: by }, [via], [to], () =>
    decide(`container.${command}`, { sandbox: c.sandbox }),
  );
  return containerView(c);
}

export async function containerStats(k: Kernel, sandboxId: string, id: string): Promise<ContainerStats> {
  const c = k.container(sandboxId, id);
  decide('container.stats', { sandbox: c.sandbox });
  return k.call(k.agent.statsContainer(sandboxId, id), 'statsContainer');
}

export async function updateContainer(
  k: Kernel,
  sandboxId: string,
  id: string,
  resources: ContainerResources,
): Promise<ContainerView> {
  const by = k.open('container.update');
  const c = k.containerEntry(sandboxId, id);
  // The intent first, then the guest: a crash in between leaves an intent recovery applies again. The whole
  // of it holds the container's turn, so no second update, pause or delete slips in before the outcome.
  await changeAndWait(
    k,
    c,
    'update',
    () => {
      decide('container.update', { sandbox: c.sandbox });
      return { type: 'ContainerUpdateRequested', data: { resources }, correlationId: by };
    },
    () => c.context.updating !== undefined,
  );
  return containerView(c);
}

export async function containerPs(k: Kernel, sandboxId: string, id: string): Promise<ProcessInfo[]> {
  const c = k.container(sandboxId, id);
  decide('container.ps', { sandbox: c.sandbox });
  return (await k.call(k.agent.listProcesses(sandboxId, id, 'json'), 'listProcesses')).processes;
}

export async function waitContainer(k: Kernel, sandboxId: string, id: string): Promise<ExitStatus> {
  const entry = k.containerEntry(sandboxId, id);
  // A wait that arrived after a create (or start) begins once those had their turn.
  const c = await entry.admit(async () => k.container(sandboxId, id));
  await c.settled(() => c.is('ended'));
  const exit = c.context.exit;
  if (!exit) throw new InvalidState('container', id, c.state, 'wait (it never ran)');
  return exit;
}
