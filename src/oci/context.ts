// What every command gets: the daemon connection, --root, the socket path and the logger.
import type { Logger } from 'pino';
import type { ApiClient } from '../api/index.js';

export interface Ctx {
  readonly client: ApiClient;
  readonly root: string;
  /** The default --root, where pointers to containers of other roots live. */
  readonly defaultRoot: string;
  readonly socket: string;
  readonly log: Logger;
  /** --systemd-cgroup: linux.cgroupsPath is systemd's slice:prefix:name (docs/oci-cli.md "Host cgroups"). */
  readonly systemdCgroup: boolean;
}
