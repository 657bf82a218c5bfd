// Door of src/actors: the actor runtime the API drives, and its contract.
//
// Shape: one Entity actor per sandbox / container / exec (entity.ts) holds its machine snapshot and a
// serial queue. A command (commands/) checks its rules and asks the kernel (kernel.ts) to record its event:
// checked with the machine (`can`), appended, then folded with the same pure `step()` replay uses; the
// effects that step names run (effect-runner.ts, with a deadline that aborts them) as the bound
// implementations of sandbox-effects.ts and container-effects.ts, whose outcomes are appended with
// causationId = the asking event's id (also the idempotency key, visible to ports as currentIntent()).
// While a VM exists, each sandbox runs two xstate child actors, `hypervisor` and `agent` (supervision.ts,
// named logic in setup({ actors })), that turn VM exits, process exits and OOMs into events. Recovery:
// load with effects off (load.ts), then reconcile with the world (recovery.ts). runtime.ts puts it all
// behind the Runtime contract (types.ts).
//
// createRuntime(options) → Promise<RuntimeHandle>; options (stable; see RuntimeOptions in runtime-options.ts):
//   store       EventStore            the log (memory or LevelDB); the runtime never closes it
//   hypervisor  Hypervisor            QEMU (or a fake in unit tests)
//   agent       Agent                 guest agent client (or a fake)
//   stateDir    string                per-sandbox dirs live in <stateDir>/sandboxes/<id>/{vm,shared}
//   image?      () => Promise<GuestImagePaths>   needed once a sandbox starts
//   templates?  VmTemplates           where starts find a template to restore from (absent: all boot cold)
//   logger?     pino.Logger           default: JSON to stderr, level $SANDBOXD_LOG_LEVEL
//   timeouts?   Partial<Record<TimeoutName, number>>   per-effect deadlines (ms), see defaultTimeouts
//   effects?    boolean               false = replay only (no reconcile, no effects, commands refused)
//   snapshots?  boolean               load from snapshots + tails (default) or fold the whole log
//   reconcileConcurrency? number      sandboxes reconciled at once after a restart (default 8)
//   snapshotEvery? number             snapshot an entity every N events, when at rest (default 16; 0 = off)
// It loads (effects off) and reconciles before resolving; `recovery` is the report.
// `shutdown()` waits for queued work, stops watchers, disconnects agents, saves snapshots, leaves VMs running.

export { createRuntime } from './create.js';
export { currentIntent, type Intent } from './intent.js';
export {
  defaultTimeouts,
  type RecoveryReport,
  type RuntimeHandle,
  type RuntimeOptions,
  type TimeoutName,
  type VmTemplateRef,
  type VmTemplateShape,
  type VmTemplates,
} from './runtime-options.js';
export * from './types.js';
export { defaultVmShape, type VmShape, vmShapeOf } from './vm-config.js';
export { mountsUnder, unmountAllUnder, type VolumeMount } from './volumes.js';
