// Door of src/shim: containerd's runtime v2 shim for sandboxd (Task service over ttrpc, events, stdio).
export { parseArgs, type ShimArgs } from './args.js';
export { toStatus } from './errdefs.js';
export { makeMountTargets, mountTargets } from './mount-targets.js';
export { containerIdFor, podSandboxIdFor, sandboxIdFor, shimSocketPath } from './naming.js';
export {
  decode,
  encode,
  messageType,
  PROTO_INCLUDE_DIRS,
  packAny,
  protos,
  TASK_SERVICE,
  unpackAny,
} from './protos.js';
export { EventPublisher, forward, forwardRequest, type TaskEvent, TOPICS } from './publish.js';
export { type ApiResources, resourcesOf } from './resources.js';
export { pidFileOf, SHIM_SERVICE, serve } from './server.js';
export { MEMORY_ANNOTATION, type PodSize, podSizeOf, VCPUS_ANNOTATION } from './sizing.js';
export { openFifo } from './stdio.js';
export { TaskTable } from './tasks.js';
