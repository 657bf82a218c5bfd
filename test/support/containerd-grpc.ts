// containerd's own gRPC Tasks service (api/services/tasks/v1/tasks.proto, loaded in place from Debian's Go
// package like the shim's protos), for what ctr 1.6 has no command for: a task Update.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_INCLUDE_DIRS } from '../../src/shim/index.js';

const TASKS_PROTO = 'github.com/containerd/containerd/api/services/tasks/v1/tasks.proto';
/** containerd's typeurl name of the OCI runtime-spec LinuxResources (sent as JSON). */
export const LINUX_RESOURCES_URL = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';

export interface TasksClient {
  /** Tasks.Update with `resources` as OCI LinuxResources JSON; rejects with the gRPC status error. */
  update(namespace: string, id: string, resources: Record<string, unknown>): Promise<void>;
  close(): void;
}

export function tasksClient(address: string): TasksClient {
  const def = protoLoader.loadSync(TASKS_PROTO, { includeDirs: PROTO_INCLUDE_DIRS, keepCase: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    containerd: { services: { tasks: { v1: { Tasks: grpc.ServiceClientConstructor } } } };
  };
  const client = new pkg.containerd.services.tasks.v1.Tasks(
    `unix://${address}`,
    grpc.credentials.createInsecure(),
  );
  return {
    update: (namespace, id, resources) =>
      new Promise((resolve, reject) => {
        const md = new grpc.Metadata();
        md.set('containerd-namespace', namespace);
        const req = {
          container_id: id,
          resources: { type_url: LINUX_RESOURCES_URL, value: Buffer.from(JSON.stringify(resources)) },
        };
        (client as unknown as Record<string, (...a: unknown[]) => void>).Update?.(
          req,
          md,
          (err: grpc.ServiceError | null) => (err ? reject(err) : resolve()),
        );
      }),
    close: () => client.close(),
  };
}
