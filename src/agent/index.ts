// Door of src/agent: the Agent port, the agent protocol (wire types, handshake), the gRPC client and its relay.
export { createGrpcAgent, GrpcAgent, type GrpcAgentOptions } from './client.js';
export { OutputPortReader, type PortSubscriber } from './output-port.js';
export { AgentRelay, type AgentRelayOptions, relaySocketPath } from './relay.js';
export * from './types.js';
export * from './wire.js';
