// The compiled stepper (src/machines/compiled.ts) against xstate's own transition(): the same state, context,
// effects and acceptance, over a real runtime's log (fake world) and over random orders of its events.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AnyStateMachine, initialTransition, transition } from 'xstate';
import { AgentError } from '../src/errors/index.js';
import { type EntityKind, type EventEnvelope, entityOfEventType } from '../src/events/index.js';
import { can, effectNames, fed, initialSnapshot, machines, step } from '../src/machines/index.js';
import { makeHarness } from './support/actors-harness.js';

type XSnapshot = ReturnType<typeof initialTransition>[0];

/** One event through both: they must agree on everything a caller can see. */
function compare(
  kind: EntityKind,
  x: XSnapshot,
  ours: ReturnType<typeof initialSnapshot>,
  event: unknown,
  where: string,
) {
  const machine = machines[kind] as AnyStateMachine;
  const xCan = (x as unknown as { can(e: unknown): boolean }).can(event);
  assert.equal(can(kind, ours as never, event as never), xCan, `${where}: can`);
  const [xNext, actions] = transition(machine, x as never, event as never);
  const mine = step(kind, ours as never, event as never);
  assert.deepEqual(mine.snapshot.value, xNext.value, `${where}: value`);
  assert.deepEqual(mine.snapshot.context, xNext.context, `${where}: context`);
  assert.equal(mine.snapshot.status, xNext.status, `${where}: status`);
  const xEffects = actions.map((a) => a.type).filter((t) => effectNames[kind].has(t));
  assert.deepEqual(mine.effects, xEffects, `${where}: effects`);
  return { x: xNext as XSnapshot, ours: mine.snapshot };
}

/** A day in the life of a runtime over the fake world: every kind, most events, failures and refusals too. */
async function aLog(): Promise<EventEnvelope[]> {
  const h = await makeHarness();
  try {
    const rt = h.runtime;
    await rt.createSandbox('s', { vcpus: 1, maxVcpus: 2, memoryMiB: 512, maxMemoryMiB: 1024 });
    await rt.startSandbox('s');
    await rt.updateSandbox('s', { vcpus: 2, memoryMiB: 640 });
    await rt.createContainer({ sandboxId: 's', id: 'c', bundle: h.bundle });
    await rt.startContainer('s', 'c');
    await rt.updateContainer('s', 'c', { memoryLimitBytes: 64 * 1024 * 1024 });
    h.world.failures.updateContainer = new AgentError('updateContainer', 'refused');
    await rt.updateContainer('s', 'c', { memoryLimitBytes: 32 * 1024 * 1024 }).catch(() => undefined);
    delete h.world.failures.updateContainer;
    await rt.updateInterface('s', { name: 'eth0', addresses: ['10.0.0.2/24'], up: true });
    await rt.updateRoutes('s', [{ dest: 'default', gateway: '10.0.0.1', device: 'eth0' }]);
    await rt.startExec('s', 'c', 'e', { args: ['true'] });
    await rt.createExec('s', 'c', 'f', { args: ['sleep', '1'] });
    await rt.deleteExec('s', 'c', 'f').catch(() => undefined);
    await rt.pauseContainer('s', 'c');
    await rt.resumeContainer('s', 'c');
    await rt.pauseSandbox('s');
    await rt.resumeSandbox('s');
    await rt.createContainer({ sandboxId: 's', id: 'd', bundle: h.bundle });
    await rt.deleteContainer('s', 'd');
    await rt.stopSandbox('s');
    await rt.startSandbox('s');
    await rt.deleteSandbox('s', { force: true });
    await rt.createSandbox('t', {});
    await rt.deleteSandbox('t');
    await rt.idle();
    return await h.events();
  } finally {
    await h.cleanup();
  }
}

describe('compiled stepper', () => {
  it('folds a runtime log exactly as xstate does, step by step', async () => {
    const log = await aLog();
    const byStream = new Map<string, EventEnvelope[]>();
    for (const e of log) byStream.set(e.stream, [...(byStream.get(e.stream) ?? []), e]);
    assert.ok(byStream.size >= 5, 'sandboxes, containers and an exec');
    for (const [stream, events] of byStream) {
      const kind = entityOfEventType(events[0]!.type)!;
      let x = initialTransition(machines[kind] as AnyStateMachine)[0] as XSnapshot;
      let ours = initialSnapshot(kind);
      assert.deepEqual([ours.value, ours.context], [x.value, x.context], `${stream}: initial`);
      for (const e of events)
        ({ x, ours } = compare(kind, x, ours, fed(e), `${stream} v${e.version} ${e.type}`));
    }
  });

  it('agrees on refusals and guards over random orders of the same events', async () => {
    const log = await aLog();
    const byKind = new Map<EntityKind, unknown[]>();
    for (const e of log) {
      const kind = entityOfEventType(e.type)!;
      byKind.set(kind, [...(byKind.get(kind) ?? []), fed(e)]);
    }
    // A small deterministic generator: the same walks on every run.
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (const [kind, pool] of byKind) {
      for (let walk = 0; walk < 200; walk++) {
        let x = initialTransition(machines[kind] as AnyStateMachine)[0] as XSnapshot;
        let ours = initialSnapshot(kind);
        for (let i = 0; i < 25; i++) {
          const event = pool[rand(pool.length)];
          ({ x, ours } = compare(kind, x, ours, event, `${kind} walk ${walk} step ${i}`));
        }
      }
    }
  });
});
