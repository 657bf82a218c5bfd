// Shared by the recovery tests: random command programs, a severable store, and the post-recovery checks.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { defaultTimeouts, type RuntimeHandle, type TimeoutName } from '../../src/actors/index.js';
import { type EventEnvelope, streamOf } from '../../src/events/index.js';
import { checkTransitions, replayStream } from '../../src/machines/index.js';
import type { EventStore } from '../../src/store/index.js';
import type { FakeWorld } from './fake-world.js';

const never = new Promise<never>(() => {});

/** A store as seen by one daemon process: after `sever()` its calls never return (the process died). */
export function severable(store: EventStore): { store: EventStore; sever(): void } {
  let dead = false;
  const proxy = new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      if (prop === 'append' || prop === 'saveSnapshot') {
        return (...args: unknown[]) => (dead ? never : value.apply(target, args));
      }
      return value.bind(target);
    },
  });
  return {
    store: proxy,
    sever() {
      dead = true;
    },
  };
}

/** Short deadlines so a dead runtime's pending timers end quickly. */
export function shortTimeouts(ms: number): Partial<Record<TimeoutName, number>> {
  return Object.fromEntries(Object.keys(defaultTimeouts).map((n) => [n, ms]));
}

const sandboxIds = ['a', 'b', 'c'] as const;
const containerIds = ['c1', 'c2'] as const;
const execIds = ['e1', 'e2'] as const;

export type Step =
  | {
      op: 'create' | 'start' | 'stop' | 'pause' | 'resume' | 'delete' | 'forceDelete' | 'crashVm';
      sb: string;
    }
  | {
      op: 'createC' | 'startC' | 'pauseC' | 'resumeC' | 'deleteC' | 'exitInit' | 'oom';
      sb: string;
      c: string;
    }
  | { op: 'exec' | 'exitExec'; sb: string; c: string; e: string }
  | { op: 'updateC'; sb: string; c: string; mib: number };

const sb = fc.constantFrom(...sandboxIds);
const c = fc.constantFrom(...containerIds);
const e = fc.constantFrom(...execIds);

/** Programs biased towards making progress (create/start first), with world happenings mixed in. */
export const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('create' as const), sb }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('start' as const), sb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constantFrom('stop' as const, 'pause' as const, 'resume' as const, 'delete' as const),
      sb,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constantFrom('forceDelete' as const, 'crashVm' as const), sb }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('createC' as const), sb, c }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('startC' as const), sb, c }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constantFrom(
        'pauseC' as const,
        'resumeC' as const,
        'deleteC' as const,
        'exitInit' as const,
        'oom' as const,
      ),
      sb,
      c,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constantFrom('exec' as const, 'exitExec' as const), sb, c, e }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('updateC' as const), sb, c, mib: fc.integer({ min: 1, max: 4 }) }),
  },
);

/** Happenings in the world alone (no daemon needed): what can occur while the daemon is down. */
export const worldStepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ op: fc.constant('crashVm' as const), sb }),
  fc.record({ op: fc.constantFrom('exitInit' as const, 'oom' as const), sb, c }),
  fc.record({ op: fc.constant('exitExec' as const), sb, c, e }),
);

/** A start that gives every program running sandboxes, containers and execs to crash in the middle of. */
export const setupSteps: readonly Step[] = [
  { op: 'create', sb: 'a' },
  { op: 'start', sb: 'a' },
  { op: 'createC', sb: 'a', c: 'c1' },
  { op: 'startC', sb: 'a', c: 'c1' },
  { op: 'exec', sb: 'a', c: 'c1', e: 'e1' },
  { op: 'create', sb: 'b' },
  { op: 'start', sb: 'b' },
  { op: 'createC', sb: 'b', c: 'c2' },
];

/** Runs one step; refusals (InvalidState, NotFound, …) are part of the game. */
export async function runStep(rt: RuntimeHandle, world: FakeWorld, bundle: string, s: Step): Promise<void> {
  const swallow = (p: Promise<unknown>) =>
    p.then(
      () => undefined,
      () => undefined,
    );
  switch (s.op) {
    case 'create':
      return swallow(rt.createSandbox(s.sb, {}));
    case 'start':
      return swallow(rt.startSandbox(s.sb));
    case 'stop':
      return swallow(rt.stopSandbox(s.sb));
    case 'pause':
      return swallow(rt.pauseSandbox(s.sb));
    case 'resume':
      return swallow(rt.resumeSandbox(s.sb));
    case 'delete':
      return swallow(rt.deleteSandbox(s.sb));
    case 'forceDelete':
      return swallow(rt.deleteSandbox(s.sb, { force: true }));
    case 'crashVm':
      world.crashVm(s.sb, 'killed by the test');
      return;
    case 'createC':
      return swallow(rt.createContainer({ sandboxId: s.sb, id: s.c, bundle }));
    case 'startC':
      return swallow(rt.startContainer(s.sb, s.c));
    case 'pauseC':
      return swallow(rt.pauseContainer(s.sb, s.c));
    case 'resumeC':
      return swallow(rt.resumeContainer(s.sb, s.c));
    case 'deleteC':
      return swallow(rt.deleteContainer(s.sb, s.c));
    case 'exitInit':
      world.exitProcess(s.sb, s.c, '', { exitCode: 7 });
      return;
    case 'oom':
      world.oomKill(s.sb, s.c);
      return;
    case 'exec':
      return swallow(rt.startExec(s.sb, s.c, s.e, { args: ['sleep', '1'] }));
    case 'exitExec':
      world.exitProcess(s.sb, s.c, s.e, { exitCode: 1 });
      return;
    case 'updateC':
      return swallow(rt.updateContainer(s.sb, s.c, { memoryLimitBytes: s.mib * 16 * 1024 * 1024 }));
  }
}

async function readAll(store: EventStore): Promise<EventEnvelope[]> {
  const out: EventEnvelope[] = [];
  for await (const ev of store.readAll()) out.push(ev);
  return out;
}

async function readStream(store: EventStore, stream: string): Promise<EventEnvelope[]> {
  const out: EventEnvelope[] = [];
  for await (const ev of store.readStream(stream)) out.push(ev);
  return out;
}

/**
 * After recovery: each entity equals a fresh replay of its stream; it agrees with the world; no effect
 * ran twice for one intent; the log holds only transitions the machines allow; deleted sandboxes left
 * no directory behind.
 */
export async function checkRecovered(
  rt: RuntimeHandle,
  world: FakeWorld,
  store: EventStore,
  stateDir: string,
) {
  const events = await readAll(store);
  assert.deepEqual(checkTransitions(events), [], 'log and machines agree');
  assert.deepEqual(world.violations, [], 'no effect ran twice in the world');
  assert.deepEqual(world.duplicateEffects(), [], 'no intent had its effect carried out twice');

  // The latest life of each sandbox id is the one the runtime shows (an id may be created again after its delete).
  const latestLife = new Map<string, string>();
  for (const ev of events) {
    if (ev.type === 'SandboxCreated') latestLife.set((ev.data as { sandboxId: string }).sandboxId, ev.stream);
  }
  for (const stream of latestLife.values()) {
    const replayed = replayStream(stream, await readStream(store, stream));
    const id = (replayed.context as { sandboxId: string }).sandboxId;
    if (replayed.state === 'deleted') {
      assert.throws(() => rt.getSandbox(id), { kind: 'NotFound' });
      assert.equal(existsSync(join(stateDir, 'sandboxes', id)), false, `deleted sandbox ${id} left its dir`);
      assert.equal(world.vms.has(id), false, `deleted sandbox ${id} left its VM`);
      continue;
    }
    const view = rt.getSandbox(id);
    assert.equal(view.state, replayed.state, `sandbox ${id}: runtime and replay agree`);
    assert.equal(view.version, replayed.version);
    const vm = world.vms.get(id);
    if (view.state === 'running' || view.state === 'paused') {
      assert.equal(vm?.status, view.state, `sandbox ${id} is ${view.state} in the log and the world`);
    } else {
      assert.equal(vm, undefined, `sandbox ${id} is ${view.state} but its VM runs`);
    }
    for (const cid of view.containers) {
      const cView = rt.getContainer(id, cid);
      const cReplay = replayStream(
        streamOf.container(id, cid),
        await readStream(store, streamOf.container(id, cid)),
      );
      assert.equal(cView.state, cReplay.state, `container ${id}/${cid}: runtime and replay agree`);
      assert.equal(cView.version, cReplay.version);
      const inWorld = vm?.containers.get(cid);
      if (['created', 'running', 'paused'].includes(cView.state)) {
        assert.equal(
          inWorld?.status,
          cView.state,
          `container ${id}/${cid} is ${cView.state} in log and world`,
        );
        // An update the world took is in the log, and one in the log was taken: intent first, then recovery.
        const logged = cReplay.context as { resources?: unknown; updating?: unknown };
        assert.equal(logged.updating, undefined, `container ${id}/${cid}: an update left without outcome`);
        assert.deepEqual(
          inWorld?.resources,
          logged.resources,
          `container ${id}/${cid}: resources in log and world`,
        );
      }
      if (cView.state === 'stopped') {
        assert.ok(!inWorld || inWorld.status === 'stopped', `container ${id}/${cid} stopped in the log only`);
      }
      for (const eid of cView.execs) {
        const eView = rt.getExec(id, cid, eid);
        const eReplay = replayStream(
          streamOf.exec(id, cid, eid),
          await readStream(store, streamOf.exec(id, cid, eid)),
        );
        assert.equal(eView.state, eReplay.state);
        const p = inWorld?.processes.get(eid);
        if (eView.state === 'running')
          assert.equal(p?.running, true, `exec ${id}/${cid}/${eid} runs in log and world`);
        if (p?.running)
          assert.equal(eView.state, 'running', `exec ${id}/${cid}/${eid} runs in the world only`);
      }
    }
  }
  for (const id of world.vms.keys()) {
    assert.ok(
      ['running', 'paused'].includes(rt.getSandbox(id).state),
      `the world runs a VM for ${id}, which the log says is ${rt.getSandbox(id).state}`,
    );
  }
}
