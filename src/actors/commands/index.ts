// Door of src/actors/commands: each command checks its rules, records its intent through the kernel and
// waits for the outcome. ActorRuntime (runtime.ts) is the only caller.
export * as container from './container.js';
export * as exec from './exec.js';
export * as guest from './guest.js';
export * as sandbox from './sandbox.js';
