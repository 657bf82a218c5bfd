// API methods: Containers of a sandbox.
import { z } from 'zod';
import { withDeadline } from '../../timing/index.js';
import {
  absolutePathSchema,
  idSchema,
  mountsSchema,
  processSchema,
  resourcesSchema,
  signalSchema,
} from '../schemas.js';
import { containerRef, type MethodSpec, method, sandboxIdRef, timeoutMsSchema } from './spec.js';

export const containerMethods = [
  method({
    name: 'container.create',
    summary:
      'Creates a container from an OCI bundle (copied into the sandbox share) without starting it. mounts bind host directories or files into it (through the share; unmounted when the container is deleted).',
    when: 'sandbox running; id unused in the sandbox; bundle an absolute path to a directory with a valid config.json; mount sources exist and stay clear of the state dir.',
    params: z.strictObject({
      sandboxId: idSchema,
      id: idSchema,
      bundle: absolutePathSchema,
      process: processSchema.optional(),
      resources: resourcesSchema.optional(),
      mounts: mountsSchema.optional(),
    }),
    result: 'ContainerView (state created, pid)',
    // The runtime checks the bundle and the mount sources (the state dir is its own): called at once, so the
    // create takes its id before a command that arrived after it on this connection runs.
    handler: (p, { runtime }) =>
      runtime.createContainer({
        sandboxId: p.sandboxId,
        id: p.id,
        bundle: p.bundle,
        ...(p.process ? { process: p.process } : {}),
        ...(p.resources ? { resources: p.resources } : {}),
        ...(p.mounts ? { mounts: p.mounts } : {}),
      }),
  }),
  method({
    name: 'container.start',
    summary: "Starts the container's init process.",
    when: 'created → running.',
    params: containerRef,
    result: 'ContainerView (state running)',
    handler: (p, { runtime }) => runtime.startContainer(p.sandboxId, p.id),
  }),
  method({
    name: 'container.kill',
    summary: 'Sends a signal to the init process (all: to every process of the container).',
    when: 'running or paused (a created container is refused with InvalidState: start or delete it).',
    params: z.strictObject({
      sandboxId: idSchema,
      id: idSchema,
      signal: signalSchema.optional(),
      all: z.boolean().optional(),
    }),
    result: '{ signalled: true }',
    handler: async (p, { runtime }) => {
      await runtime.killContainer(p.sandboxId, p.id, p.signal ?? 'SIGTERM', p.all);
      return { signalled: true };
    },
  }),
  method({
    name: 'container.delete',
    summary: 'Removes a container (force: kills it first).',
    when: 'created or stopped (any state with force).',
    params: z.strictObject({ sandboxId: idSchema, id: idSchema, force: z.boolean().optional() }),
    result: '{ id, deleted: true, exit?: ExitStatus, exitedAt? } (how and when its init ended)',
    handler: async (p, { runtime }) => {
      // How the init ended and when, as containerd's Delete reports it (none for a container that never ran,
      // nor for one a forced delete ended: that kill is not recorded as an exit).
      const after = await runtime.deleteContainer(
        p.sandboxId,
        p.id,
        p.force === undefined ? undefined : { force: p.force },
      );
      return {
        id: p.id,
        deleted: true,
        ...(after.exit ? { exit: after.exit } : {}),
        ...(after.exitedAt ? { exitedAt: after.exitedAt } : {}),
      };
    },
  }),
  method({
    name: 'container.state',
    summary: "A container's current view.",
    params: containerRef,
    result: 'ContainerView',
    handler: (p, { runtime }) => runtime.getContainer(p.sandboxId, p.id),
  }),
  method({
    name: 'container.list',
    summary: 'The containers of a sandbox.',
    params: sandboxIdRef,
    result: 'ContainerView[]',
    handler: (p, { runtime }) => runtime.listContainers(p.sandboxId),
  }),
  method({
    name: 'container.pause',
    summary: 'Freezes the container (cgroup freezer).',
    when: 'running → paused.',
    params: containerRef,
    result: 'ContainerView',
    handler: (p, { runtime }) => runtime.pauseContainer(p.sandboxId, p.id),
  }),
  method({
    name: 'container.resume',
    summary: 'Thaws a paused container.',
    when: 'paused → running.',
    params: containerRef,
    result: 'ContainerView',
    handler: (p, { runtime }) => runtime.resumeContainer(p.sandboxId, p.id),
  }),
  method({
    name: 'container.stats',
    summary: 'cgroup v2 stats of the container (cpu, memory, pids, io).',
    when: 'running or paused.',
    params: containerRef,
    result: 'ContainerStats',
    handler: (p, { runtime }) => runtime.containerStats(p.sandboxId, p.id),
  }),
  method({
    name: 'container.update',
    summary: "Changes the container's resource limits.",
    when: 'created, running or paused.',
    params: z.strictObject({ sandboxId: idSchema, id: idSchema, resources: resourcesSchema }),
    result: 'ContainerView',
    handler: (p, { runtime }) => runtime.updateContainer(p.sandboxId, p.id, p.resources),
  }),
  method({
    name: 'container.ps',
    summary: 'Processes running in the container.',
    when: 'running or paused.',
    params: containerRef,
    result: 'ProcessInfo[] { pid, user?, command }',
    handler: (p, { runtime }) => runtime.containerPs(p.sandboxId, p.id),
  }),
  method({
    name: 'container.wait',
    summary: "Resolves with the init process's exit status once it ended (timeoutMs: Timeout error instead).",
    params: z.strictObject({ sandboxId: idSchema, id: idSchema, timeoutMs: timeoutMsSchema.optional() }),
    result: 'ExitStatus { exitCode, signal?, oomKilled? }',
    handler: (p, { runtime }) =>
      withDeadline(
        runtime.waitContainer(p.sandboxId, p.id),
        p.timeoutMs,
        `container.wait ${p.sandboxId}/${p.id}`,
      ),
  }),
] as const satisfies readonly MethodSpec[];
