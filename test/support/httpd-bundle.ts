// The busybox httpd container the network tests reach a guest through: it serves GUEST_PAGE on `port`.
import { createBusyboxBundle } from '../../src/image/index.js';

/** What the container's httpd answers at `/`. */
export const GUEST_PAGE = 'hello-from-guest\n';

/** The busybox command line that serves GUEST_PAGE with `httpd -f` on `port` (a bundle's or an image's). */
export function httpdArgs(port = 8080): string[] {
  return [
    'sh',
    '-c',
    `mkdir -p /www && echo ${GUEST_PAGE.trim()} > /www/index.html && exec httpd -f -p ${port} -h /www`,
  ];
}

/** Writes a busybox bundle into `dir` whose process serves GUEST_PAGE on `port` (8080). */
export function createHttpdBundle(dir: string, port = 8080): Promise<void> {
  return createBusyboxBundle(dir, { args: httpdArgs(port) });
}
