// Door of src/guest: the guest agent (runs in the VM; main.ts is its entry) and its parts, for tests and the bench.
export { AgentChannel, type ChannelOptions, openPortDevice, type PortDevice } from './channel.js';
export { defaultGuestPaths, type GuestPaths } from './container-record.js';
export { ContainerManager } from './containers.js';
export { type GuestEvent, GuestEventLog, type GuestExitStatus, type NumberedEvent } from './events.js';
export { DEFAULT_OUTPUT_CAPACITY, OutputBuffer } from './output.js';
export { OutputPort, type OutputPortDevice, openOutputPortDevice } from './output-port.js';
export { type GuestAgent, type GuestAgentOptions, startGuestAgent } from './server.js';
export { type AgentHandlers, createHandlers, toServiceError } from './service.js';
