// The hypervisor and agent actors of a sandbox: children that report what happens in the VM unasked.
import { type AnyActorRef, createActor, fromCallback, setup } from 'xstate';
import type { Agent, AgentEvent } from '../agent/index.js';
import type { Hypervisor, VmEvent } from '../hypervisor/index.js';

export type Happening =
  | { readonly source: 'hypervisor'; readonly event: VmEvent }
  | { readonly source: 'agent'; readonly event: AgentEvent };

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
