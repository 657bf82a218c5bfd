// ttrpc (containerd's lightweight RPC over unix sockets) in TypeScript: framing, a client and a server.
// Knows nothing of containerd: payloads are bytes, encoded by whoever owns the message types.
export { type CallOptions, TtrpcClient } from './client.js';
export {
  encodeFrame,
  Flags,
  type Frame,
  FrameDecoder,
  HEADER_LENGTH,
  MAX_MESSAGE_LENGTH,
  MessageType,
} from './frame.js';
export { decodeRequest, decodeResponse, encodeRequest, encodeResponse, type Metadata } from './messages.js';
export { type CallContext, type Handler, type ServerOptions, TtrpcServer } from './server.js';
export { Code, type CodeName, codeName, TtrpcError } from './status.js';
