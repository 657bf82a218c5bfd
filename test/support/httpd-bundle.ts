// The busybox httpd container the network tests reach a guest through: it serves GUEST_PAGE on `port`.
import { createBusyboxBundle } from '../../src/image/index.js';

/** What the container's httpd answers at `/`. */
export const GUEST_PAGE = 'hello-from-guest\n';

/** Writes a busybox bundle into `dir` whose process serves GUEST_PAGE with `httpd -f` on `port` (8080). */
export function createHttpdBundle(dir: string, port = 8080): Promise<void> {
  return createBusyboxBundle(dir, {
    args: [
      'sh',
      '-c',
      `mkdir -p /www && echo ${GUEST_PAGE.trim()} > /www/index.html && exec httpd -f -p ${port} -h /www`,
    ],
  });
}
