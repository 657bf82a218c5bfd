// Door of src/logs: each container's and exec's output kept on the host, in the CRI log format, bounded by rotation.
//
// Layout: <stateDir>/sandboxes/<sandboxId>/logs/<containerLife>/<init | exec-<execLife>>/{<seq>.log, <seq>.json,
// end.json} (see writer.ts for why a sidecar per file). The keeper (keeper.ts) attaches to every process's output
// through the agent for as long as the daemon runs, appends it, resumes after a restart where the log ends, and removes
// a log once its container or exec is deleted.
export * from './cri.js';
export {
  OutputKeeper,
  type OutputKeeperOptions,
  type OutputLoss,
  type ProcessRef,
} from './keeper.js';
export { logLimitsFrom, parseSize } from './limits.js';
export { type ReadOptions, type ReadResult, readLog } from './reader.js';
export {
  DEFAULT_LOG_LIMITS,
  type LogLimits,
  MIN_LOG_FILE_BYTES,
  ProcessLogWriter,
} from './writer.js';
