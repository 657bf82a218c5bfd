// Door of src/oci: sandboxd-runc, the runc-compatible OCI runtime command line (a client of the daemon's API),
// and its keeper (keeper.c, one host process per container process).
export type { Ctx } from './context.js';
export { describe, RuncError } from './errors.js';
export { type KeeperOptions, keeperPath, spawnKeeper } from './keeper.js';
export { placement, sandboxIdFor } from './locate.js';
export { buildProgram, DEFAULT_ROOT, versionText } from './program.js';
export { type ContainerRecord, readRecord } from './records.js';
export { type RuncState, runcState, SPEC_VERSION, statusOf } from './state.js';
