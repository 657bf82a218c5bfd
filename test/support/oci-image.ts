// A busybox image for podman, built offline: the project's busybox rootfs as one layer of an OCI image (umoci),
// packed as an oci-archive that `podman load` takes.
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createBusyboxBundle } from '../../src/image/index.js';

const run = promisify(execFile);

/** Writes `<dir>/busybox.tar` (oci-archive) and returns its path. */
export async function busyboxImageArchive(dir: string): Promise<string> {
  const bundle = join(dir, 'image-rootfs');
  const layout = join(dir, 'image-layout');
  await createBusyboxBundle(bundle);
  await run('umoci', ['init', '--layout', layout]);
  await run('umoci', ['new', '--image', `${layout}:latest`]);
  await run('umoci', ['insert', '--image', `${layout}:latest`, join(bundle, 'rootfs'), '/']);
  await run('umoci', ['config', '--image', `${layout}:latest`, '--config.cmd', 'sh']);
  const archive = join(dir, 'busybox.tar');
  await run('tar', ['cf', archive, '-C', layout, '.']);
  await rm(bundle, { recursive: true, force: true });
  await rm(layout, { recursive: true, force: true });
  return archive;
}
