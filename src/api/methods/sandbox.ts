// API methods: Sandboxes: create, lifecycle, resize, views.
import { z } from 'zod';
import { checkCgroupDirs } from '../../cgroups/index.js';
import { idSchema, sandboxConfigSchema } from '../schemas.js';
import { type MethodSpec, method, sandboxRef, timeoutMsSchema } from './spec.js';

/** sandbox.update: new totals, at least one (the same bounds sandbox.create allows). */
const sandboxUpdateParams = z
  .strictObject({
    id: idSchema,
    vcpus: z.number().int().min(1).max(64).optional(),
    memoryMiB: z.number().int().min(128).max(262144).optional(),
  })
  .refine((p) => p.vcpus !== undefined || p.memoryMiB !== undefined, {
    error: 'give vcpus, memoryMiB or both',
    path: ['vcpus'],
  });

export const sandboxMethods = [
  method({
    name: 'sandbox.create',
    summary: 'Records a new sandbox (no VM yet).',
    when: 'id must be unused. Appends SandboxCreated.',
    params: z.strictObject({ id: idSchema, config: sandboxConfigSchema.optional() }),
    result: 'SandboxView { id, state: "created", config, containers, createdAt, version }',
    handler: async (p, { runtime }) => {
      // Directories QEMU will join must be there now: a bad one is refused before anything is recorded.
      if (p.config?.hostCgroup) await checkCgroupDirs(p.config.hostCgroup, 'config.hostCgroup');
      return runtime.createSandbox(p.id, p.config ?? {});
    },
  }),
  method({
    name: 'sandbox.start',
    summary: 'Boots the VM and connects to its agent; resolves once the sandbox runs.',
    when: 'created, stopped, failed or lost (a new VM; containers of the old one stay ended). starting → running, or failed with the error.',
    params: sandboxRef,
    result: 'SandboxView (state running, pid, accel)',
    handler: (p, { runtime }) => runtime.startSandbox(p.id),
  }),
  method({
    name: 'sandbox.stop',
    summary:
      "Stops the sandbox as docker stop does: SIGTERM to each running container's init, up to timeoutMs (default 10 s) for them to end, SIGKILL to the rest (each exit recorded as ContainerExited), then the VM's powerdown (quit, then SIGKILL, after timeoutMs again).",
    when: 'running or paused. stopping → stopped.',
    params: z.strictObject({ id: idSchema, timeoutMs: timeoutMsSchema.optional() }),
    result: 'SandboxView (state stopped)',
    handler: (p, { runtime }) =>
      runtime.stopSandbox(p.id, p.timeoutMs === undefined ? undefined : { timeoutMs: p.timeoutMs }),
  }),
  method({
    name: 'sandbox.pause',
    summary: 'Pauses the VM (QMP stop).',
    when: 'running → paused.',
    params: sandboxRef,
    result: 'SandboxView (state paused)',
    handler: (p, { runtime }) => runtime.pauseSandbox(p.id),
  }),
  method({
    name: 'sandbox.resume',
    summary: 'Resumes a paused VM (QMP cont).',
    when: 'paused → running.',
    params: sandboxRef,
    result: 'SandboxView (state running)',
    handler: (p, { runtime }) => runtime.resumeSandbox(p.id),
  }),
  method({
    name: 'sandbox.update',
    summary:
      "Grows a running sandbox's VM to vcpus vCPUs and memoryMiB MiB in total (hotplug; the guest agent onlines them).",
    when: 'running. Appends SandboxResizeRequested { vcpus, memoryMiB } (the totals asked), then SandboxResized (the totals the VM has) or, when a step failed, SandboxResized with what QEMU took (if anything) and SandboxResizeFailed; equal to now: nothing. Refused before anything is appended (InvalidArgument): above maxVcpus / maxMemoryMiB, smaller than now (no unplug), memory growth not a multiple of 128 MiB. No free DIMM slot (4): InvalidArgument, recorded as SandboxResizeFailed, nothing plugged.',
    params: sandboxUpdateParams,
    result: 'SandboxView (vcpus, memoryMiB: the new totals)',
    handler: (p, { runtime }) =>
      runtime.updateSandbox(p.id, {
        ...(p.vcpus === undefined ? {} : { vcpus: p.vcpus }),
        ...(p.memoryMiB === undefined ? {} : { memoryMiB: p.memoryMiB }),
      }),
  }),
  method({
    name: 'sandbox.networkRefresh',
    summary:
      "Plugs a NIC into a running netns sandbox for each veth added to its namespace since it was wired (tap, tc redirects, hotplugged virtio-net with the veth's MAC; the guest gets its addresses, MTU and routes), and unplugs the NIC of each veth gone (its tap and filters removed). Call it after a CNI ADD or DEL on the sandbox's namespace.",
    when: 'running, on a network namespace (else InvalidArgument naming id). Appends SandboxNetworkRefreshRequested, then SandboxNetworkRefreshed { links, added, removed, changes } or SandboxNetworkRefreshFailed (after a SandboxNetworkRefreshed with what was done, if anything). Nothing added or gone: a SandboxNetworkRefreshed with no change.',
    params: sandboxRef,
    result: 'SandboxView (interfaces: the wiring now)',
    handler: (p, { runtime }) => runtime.refreshNetwork(p.id),
  }),
  method({
    name: 'sandbox.delete',
    summary: 'Deletes a sandbox and its directory; force also stops a running one.',
    when: 'stopped, created, failed or lost (any state with force).',
    params: z.strictObject({ id: idSchema, force: z.boolean().optional() }),
    result: '{ id, deleted: true }',
    handler: async (p, { runtime }) => {
      await runtime.deleteSandbox(p.id, p.force === undefined ? undefined : { force: p.force });
      return { id: p.id, deleted: true };
    },
  }),
  method({
    name: 'sandbox.status',
    summary: "A sandbox's current view.",
    params: sandboxRef,
    result: 'SandboxView',
    handler: (p, { runtime }) => runtime.getSandbox(p.id),
  }),
  method({
    name: 'sandbox.list',
    summary: 'All sandboxes (not deleted), optionally only those in one state.',
    params: z.strictObject({ state: z.string().min(1).max(32).optional() }).optional(),
    result: 'SandboxView[]',
    handler: (p, { runtime }) => {
      const all = runtime.listSandboxes();
      return p?.state === undefined ? all : all.filter((s) => s.state === p.state);
    },
  }),
  method({
    name: 'sandbox.stats',
    summary:
      "The sandbox view, what its VM costs the host (QEMU's pid, CPU seconds, RSS, threads) and cgroup v2 stats of each container.",
    when: 'running.',
    params: sandboxRef,
    result:
      '{ sandbox: SandboxView, vm?: { pid, cpuSeconds, rssBytes, threads }, containers: { [id]: ContainerStats } }',
    handler: (p, { runtime }) => runtime.sandboxStats(p.id),
  }),
] as const satisfies readonly MethodSpec[];
