// Door of src/api: the JSON-RPC server, its method table and docs, and the client sandboxctl uses.
export { type BundleSummary, validateBundle } from './bundle.js';
export {
  type ApiClient,
  type BatchOutcome,
  connectApi,
  DaemonUnreachable,
  type Notification,
} from './client.js';
export { DAEMON_RECORD, type DaemonRecord, forgetDaemon, liveDaemonOf, recordDaemon } from './discovery.js';
export { renderApiDocs } from './docs.js';
export {
  RPC_INTERNAL_ERROR,
  RPC_INVALID_PARAMS,
  RPC_INVALID_REQUEST,
  RPC_METHOD_NOT_FOUND,
  RPC_PARSE_ERROR,
  RpcCallError,
  type RpcErrorObject,
  toRpcError,
} from './errors.js';
export { LineDecoder, MAX_MESSAGE_BYTES } from './framing.js';
export {
  type ConnectionContext,
  type DaemonFacts,
  type EventLogReader,
  type MethodContext,
  type MethodName,
  type MethodSpec,
  methods,
  methodTable,
  readEventPage,
  type SubscriptionSpec,
  type TransitionProblem,
} from './methods/index.js';
export { type ApiTraffic, type MethodTraffic, type MetricsSources, renderMetrics } from './metrics.js';
export { ID_PATTERN, idSchema } from './schemas.js';
export { type ApiServer, type ApiServerOptions, createApiServer } from './server.js';
export { refuseLiveSocket, socketIsLive } from './socket.js';
