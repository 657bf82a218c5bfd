// What the API shows of an entity: plain views computed from its machine context (no I/O).

import type { ContainerActor, ExecActor, SandboxActor } from './entity.js';
import { guestDnsOf } from './netns-network.js';
import { currentSize } from './resize.js';
import type { ContainerView, ExecView, SandboxView } from './types.js';
import { vmShapeOf } from './vm-config.js';

export function sandboxView(s: SandboxActor): SandboxView {
  const c = s.context;
  const error = c.error?.message ?? c.lostReason;
  const size = currentSize(vmShapeOf(c.config), c.size);
  const dns = guestDnsOf(c.config, c.netns);
  return {
    id: s.id,
    incarnation: s.incarnation,
    state: s.state,
    config: c.config,
    vcpus: size.vcpus,
    memoryMiB: size.memoryMiB,
    ...(c.handle ? { pid: c.handle.pid, accel: c.handle.accel } : {}),
    containers: [...s.containers.keys()],
    createdAt: c.createdAt,
    version: s.version,
    ...(error === undefined ? {} : { error }),
    ...(dns ? { dns } : {}),
    ...(c.guestNetwork ? { guestNetwork: c.guestNetwork } : {}),
    ...(c.netns
      ? {
          interfaces: c.netns.links.map((l) => ({
            veth: l.veth,
            tap: l.tap,
            mac: l.mac,
            addresses: l.addresses,
          })),
        }
      : {}),
    ...originOf(c),
  };
}

/** `template: <id>` for a clone, `cold` for a booted VM; the restore's failure when it fell back. */
function originOf(c: SandboxActor['context']): Pick<SandboxView, 'template' | 'templateError'> {
  const template = c.restored?.templateId ?? (c.handle ? 'cold' : undefined);
  return {
    ...(template === undefined ? {} : { template }),
    ...(c.restoreFailed
      ? { templateError: `${c.restoreFailed.templateId}: ${c.restoreFailed.error.message}` }
      : {}),
  };
}

export function containerView(c: ContainerActor): ContainerView {
  const x = c.context;
  return {
    sandboxId: c.sandbox.id,
    id: c.id,
    incarnation: c.incarnation,
    state: c.state,
    bundle: x.bundle,
    ...(x.pid === undefined ? {} : { pid: x.pid }),
    ...(x.exit ? { exit: x.exit } : {}),
    execs: [...c.execs.keys()],
    createdAt: x.createdAt,
    ...(x.startedAt ? { startedAt: x.startedAt } : {}),
    ...(x.exitedAt ? { exitedAt: x.exitedAt } : {}),
    annotations: x.annotations ?? {},
    terminal: x.terminal === true,
    version: c.version,
  };
}

export function execView(e: ExecActor): ExecView {
  const x = e.context;
  return {
    sandboxId: x.sandboxId,
    containerId: x.containerId,
    id: e.id,
    incarnation: e.incarnation,
    state: e.state,
    process: x.process,
    ...(x.pid === undefined ? {} : { pid: x.pid }),
    ...(x.exit ? { exit: x.exit } : {}),
    version: e.version,
  };
}
