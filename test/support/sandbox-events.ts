// Sandbox machine inputs for the machine tests: a VM handle, the events of a boot, and folding events through step().
import { initialSnapshot, type SandboxMachineEvent, step } from '../../src/machines/index.js';

export const vmHandle = {
  sandboxId: 'a',
  pid: 10,
  pidStartTime: 5,
  accel: 'tcg',
  stateDir: '/s/vm',
  qmpSocket: '/s/vm/qmp.sock',
  agentSocket: '/s/vm/agent.sock',
  consoleLog: '/s/vm/console.log',
} as const;

type Config = Extract<SandboxMachineEvent, { type: 'SandboxCreated' }>['data']['config'];

/** Created with `config`, then started: the five events of a boot that went well. */
export function bootEvents(config: Config, at?: string): SandboxMachineEvent[] {
  return [
    { type: 'SandboxCreated', data: { sandboxId: 'a', config }, ...(at ? { at } : {}) },
    { type: 'SandboxStartRequested', data: {} },
    { type: 'VmLaunched', data: { handle: vmHandle } },
    { type: 'AgentConnected', data: { agentVersion: '1' } },
    { type: 'SandboxStarted', data: {} },
  ];
}

/** The sandbox after `events`, and every effect they named on the way. */
export function foldSandbox(events: readonly SandboxMachineEvent[]) {
  let snapshot = initialSnapshot('sandbox');
  const effects: string[] = [];
  for (const e of events) {
    const r = step('sandbox', snapshot, e);
    snapshot = r.snapshot;
    effects.push(...r.effects);
  }
  return { snapshot, effects };
}
