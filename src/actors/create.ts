// createRuntime: load every entity (effects off), reconcile with the world, then serve commands.
import { loadEntities } from './load.js';
import { reconcileAll } from './recovery.js';
import { ActorRuntime } from './runtime.js';
import type { RecoveryReport, RuntimeHandle, RuntimeOptions } from './runtime-options.js';

function counts(rt: ActorRuntime): Pick<RecoveryReport, 'sandboxes' | 'containers' | 'execs'> {
  let containers = 0;
  let execs = 0;
  for (const s of rt.sandboxes.values()) {
    containers += s.containers.size;
    for (const c of s.containers.values()) execs += c.execs.size;
  }
  return { sandboxes: rt.sandboxes.size, containers, execs };
}

/**
 * Builds the runtime over `options.store`: folds snapshots + log tails (or the whole log) through the
 * machines with effects off, then — unless `effects: false` — reconciles every sandbox with the world
 * (reattach, lost, exits while down, intents settled) before resolving. `recovery` holds the report.
 * Throws what the store throws (e.g. Corruption); reconciliation problems are reported, not thrown.
 */
export async function createRuntime(options: RuntimeOptions): Promise<RuntimeHandle> {
  const rt = new ActorRuntime(options);
  const started = performance.now();
  const loaded = await loadEntities(rt, options.snapshots !== false);
  const loadMs = performance.now() - started;
  let report: RecoveryReport = {
    ...counts(rt),
    eventsReplayed: 0,
    snapshotsUsed: 0,
    loadMs: 0,
    reconcileMs: 0,
    reattached: [],
    lost: [],
    settled: [],
    appended: 0,
    errors: [],
  };
  if (rt.effectsOn) {
    report = await reconcileAll(rt);
    // Sandboxes whose VM lives on (reattached, or a boot being continued) get their watchers.
    for (const s of rt.sandboxes.values()) {
      if (s.context.handle && s.is('vmUp')) rt.supervise(s);
    }
  }
  rt.recovery = { ...report, ...counts(rt), ...loaded, loadMs };
  rt.logger.info(
    {
      sandboxes: rt.recovery.sandboxes,
      events: loaded.eventsReplayed,
      snapshots: loaded.snapshotsUsed,
      loadMs: Math.round(loadMs),
      reconcileMs: Math.round(report.reconcileMs),
      reattached: report.reattached.length,
      lost: report.lost.length,
      settled: report.settled.length,
    },
    'recovered',
  );
  return rt;
}
