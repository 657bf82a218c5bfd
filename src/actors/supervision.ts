// The hypervisor and agent actors of a sandbox: children that report what happens in the VM unasked.
import { type AnyActorRef, createActor, fromCallback, setup } from 'xstate';
import type { Agent, AgentEvent } from '../agent/index.js';
import { correlation } from '../explain/index.js';
import type { Hypervisor, VmEvent } from '../hypervisor/index.js';
import type { Asked } from './effect-runner.js';
import type { AnyEntity, SandboxActor } from './entity.js';

export type Happening =
  | { readonly source: 'hypervisor'; readonly event: VmEvent }
  | { readonly source: 'agent'; readonly event: AgentEvent };

/** Who asked, for what the daemon records on its own. */
export const supervised = {
  hypervisor: correlation.supervision('hypervisor'),
  agent: correlation.supervision('agent'),
  cascade: correlation.supervision('cascade'),
} as const;

export interface PortsInput {
  readonly sandboxId: string;
  readonly hypervisor: Hypervisor;
  readonly agent: Agent;
  /** Receives VM exits, process exits and OOMs; the runtime turns them into events. */
  readonly report: (happening: Happening) => void;
  readonly onError: (source: 'hypervisor' | 'agent', error: unknown) => void;
}

/** Follows the VM's QMP events and process monitor (hypervisor.events) for as long as it runs. */
export const hypervisorActor = fromCallback<{ type: string }, PortsInput>(({ input }) => {
  const sub = input.hypervisor.events(input.sandboxId).subscribe({
    next: (event) => input.report({ source: 'hypervisor', event }),
    error: (err) => input.onError('hypervisor', err),
  });
  return () => sub.unsubscribe();
});

/** Follows the guest agent's process exits and OOMs (agent.events survives reconnects). */
export const agentActor = fromCallback<{ type: string }, PortsInput>(({ input }) => {
  const sub = input.agent.events(input.sandboxId).subscribe({
    next: (event) => input.report({ source: 'agent', event }),
    error: (err) => input.onError('agent', err),
  });
  return () => sub.unsubscribe();
});

/**
 * The part of a sandbox actor that talks to the world unasked: one hypervisor child and one agent
 * child, named logic so the tree is inspectable (sandbox → {hypervisor, agent}). Never persisted:
 * started when a VM exists (launch or reattach), stopped when it is known gone.
 */
export const sandboxPortsMachine = setup({
  types: {} as { input: PortsInput; context: PortsInput },
  actors: { hypervisor: hypervisorActor, agent: agentActor },
}).createMachine({
  id: 'sandboxPorts',
  context: ({ input }) => input,
  invoke: [
    { id: 'hypervisor', src: 'hypervisor', input: ({ context }) => context },
    { id: 'agent', src: 'agent', input: ({ context }) => context },
  ],
});

export function startPorts(input: PortsInput): AnyActorRef {
  return createActor(sandboxPortsMachine, { input }).start();
}

/** What the runtime records of a happening, and on which entity; undefined: nothing to record (only logged). */
export function recordOfHappening(
  sandbox: SandboxActor,
  h: Happening,
): { readonly entity: AnyEntity; readonly event: Asked } | undefined {
  if (h.source === 'hypervisor') {
    if (h.event.type !== 'exited') return undefined;
    return {
      entity: sandbox,
      event: { type: 'VmExited', data: { reason: h.event.reason }, correlationId: supervised.hypervisor },
    };
  }
  const e = h.event;
  const container = sandbox.containers.get(e.containerId);
  if (!container) return undefined;
  if (e.type === 'oom') {
    return {
      entity: container,
      event: { type: 'ContainerOomKilled', data: {}, correlationId: supervised.agent },
    };
  }
  const { exitCode, signal, oomKilled } = e.status;
  const exit = { exitCode, ...(signal === undefined ? {} : { signal }) };
  if (e.execId === '') {
    return {
      entity: container,
      event: {
        type: 'ContainerExited',
        data: { ...exit, oomKilled: oomKilled === true },
        correlationId: supervised.agent,
      },
    };
  }
  const exec = container.execs.get(e.execId);
  if (!exec) return undefined;
  const data = oomKilled === undefined ? exit : { ...exit, oomKilled };
  return { entity: exec, event: { type: 'ProcessExited', data, correlationId: supervised.agent } };
}
