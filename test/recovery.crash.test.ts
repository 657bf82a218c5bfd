// Property: whatever the daemon was doing when it died, recovery gives the same state as the log and the world.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { createRuntime, type RuntimeHandle } from '../src/actors/index.js';
import { createMemoryEventStore, type EventStore, openLevelEventStore } from '../src/store/index.js';
import { fakeImage, makeHarness, silent } from './support/actors-harness.js';
import {
  checkRecovered,
  runStep,
  type Step,
  setupSteps,
  severable,
  shortTimeouts,
  stepArb,
  worldStepArb,
} from './support/crash-check.js';
import { FakeAgent, FakeHypervisor } from './support/fake-world.js';

interface Scenario {
  readonly steps: Step[];
  /** The effect call at which the daemon dies (beyond the program's effects: it dies at the end). */
  readonly crashAt: number;
  /** Whether the world changed before it died (outcome lost) or not (intent only). */
  readonly lands: boolean;
  readonly snapshots: boolean;
  /** What happens in the world while no daemon runs (VM deaths, exits, OOMs). */
  readonly whileDown: Step[];
  /** Runtime 1 snapshots entities every N events (0 = never), so recovery mixes snapshots and tails. */
  readonly snapshotEvery: number;
}

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  steps: fc.array(stepArb, { minLength: 10, maxLength: 40 }).map((random) => [...setupSteps, ...random]),
  crashAt: fc.integer({ min: 1, max: 30 }),
  lands: fc.boolean(),
  snapshots: fc.boolean(),
  whileDown: fc.array(worldStepArb, { maxLength: 3 }),
  snapshotEvery: fc.constantFrom(0, 1, 3),
});

/**
 * Runs the program on runtime 1 until the planned crash, drops runtime 1 without shutdown (its store
 * and ports severed, as if the process died), recovers runtime 2 from the same store and world, and
 * checks it. `reopen` swaps the store between the two lives (LevelDB: close and open the directory).
 */
/** What the runs exercised, so the property cannot pass vacuously. */
const seen = { runs: 0, diedInAnEffect: 0, settled: 0, reattached: 0, lost: 0 };

async function crashAndRecover(s: Scenario, store: EventStore, reopen?: () => Promise<EventStore>) {
  seen.runs += 1;
  const h = await makeHarness({ store, timeouts: shortTimeouts(1500) });
  // Runtime 1 of the harness is replaced by one over a severable store.
  await h.runtime.shutdown();
  const life1 = severable(store);
  const hv1 = new FakeHypervisor(h.world);
  const ag1 = new FakeAgent(h.world);
  let rt2: RuntimeHandle | undefined;
  try {
    const rt1 = await createRuntime({
      store: life1.store,
      hypervisor: hv1,
      agent: ag1,
      stateDir: h.stateDir,
      image: fakeImage,
      logger: silent,
      traceIntents: true,
      timeouts: shortTimeouts(1500),
      snapshotEvery: s.snapshotEvery,
    });
    let died!: () => void;
    const death = new Promise<void>((resolve) => {
      died = resolve;
    });
    const die = () => {
      life1.sever();
      hv1.sever();
      ag1.sever();
      died();
    };
    h.world.planCrash({ atEffect: s.crashAt, lands: s.lands, onCrash: die });
    for (const step of s.steps) {
      if (h.world.crashed) break;
      await Promise.race([runStep(rt1, h.world, h.bundle, step), death]);
    }
    if (h.world.crashed) seen.diedInAnEffect += 1;
    else {
      // Maybe save snapshots first; then die between two commands.
      if (s.snapshots) await rt1.saveSnapshots();
      die();
    }
    h.world.planCrash(undefined);
    for (const step of s.whileDown) await runStep(rt1, h.world, h.bundle, step);
    const store2 = reopen ? await reopen() : store;
    h.store = store2;
    rt2 = await createRuntime({
      store: store2,
      hypervisor: new FakeHypervisor(h.world),
      agent: new FakeAgent(h.world),
      stateDir: h.stateDir,
      image: fakeImage,
      logger: silent,
      traceIntents: true,
      timeouts: shortTimeouts(1500),
      snapshots: s.snapshots,
    });
    await rt2.idle();
    seen.settled += rt2.recovery.settled.length;
    seen.reattached += rt2.recovery.reattached.length;
    seen.lost += rt2.recovery.lost.length;
    await checkRecovered(rt2, h.world, store2, h.stateDir);
  } catch (err) {
    // fast-check reports the failing input; say what failed with it.
    console.log('# recovery check failed:', err instanceof Error ? err.message : err);
    throw err;
  } finally {
    await rt2?.shutdown();
    await h.cleanup();
  }
}

describe('crash and recover (property-based, fake world)', () => {
  it('recovers to the log and the world after a crash at any effect, with the memory store', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, (s) => crashAndRecover(s, createMemoryEventStore())),
      {
        numRuns: Number(process.env.FC_RUNS ?? 60),
        seed: Number(process.env.FC_SEED ?? 4242),
        endOnFailure: true,
      },
    );
    // The generator must really crash daemons mid-effect and leave intents, VMs and losses to recover.
    assert.ok(
      seen.diedInAnEffect >= seen.runs / 4,
      `only ${seen.diedInAnEffect}/${seen.runs} runs died in an effect`,
    );
    assert.ok(seen.settled > 0 && seen.reattached > 0 && seen.lost > 0, JSON.stringify(seen));
    console.log('# crash property exercised', JSON.stringify(seen));
  });

  it('recovers the same way over the LevelDB store, closed and reopened across the crash', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (s) => {
        const dir = await mkdtemp(join(tmpdir(), 'sandboxd-crash-level-'));
        const path = join(dir, 'log');
        let current: EventStore = await openLevelEventStore(path, { logger: silent });
        try {
          await crashAndRecover(s, current, async () => {
            await current.close();
            current = await openLevelEventStore(path, { logger: silent });
            return current;
          });
        } finally {
          await current.close().catch(() => undefined);
          await rm(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 8, seed: Number(process.env.FC_SEED ?? 777), endOnFailure: true },
    );
  });
});
