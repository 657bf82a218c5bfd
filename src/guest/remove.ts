// Removing a container: what still runs killed, crun's state deleted, our cgroup and state dir cleaned up.
import { rm, rmdir } from 'node:fs/promises';
import { Timeout } from '../errors/index.js';
import { sleep } from '../timing/index.js';
import { type Container, closeGate, forgetContainer, type GuestContext } from './container-record.js';
import { killPid, runCrun } from './crun.js';
import { runCommand } from './process.js';

/** Kills what still runs (SIGKILL), waits up to `timeoutMs`, removes crun state and our cgroup; throws Timeout. */
export async function removeContainer(
  context: GuestContext,
  containers: Map<string, Container>,
  container: Container,
  timeoutMs: number,
): Promise<void> {
  const { paths } = context;
  const { id } = container;
  container.init.announce();
  if (!container.init.exit) {
    // A created container's gate hook reads EOF once no writer is left, and crun tears the container down.
    closeGate(container);
    if (container.status === 'paused')
      await runCrun(paths, 'crun resume', ['resume', id], id).catch(() => {});
    killPid(container.init.pid, 'SIGKILL');
    await runCommand(paths.crun, ['kill', '--all', id, 'KILL']);
    const timer = sleep(timeoutMs || 10_000).then(() => 'timeout' as const);
    if ((await Promise.race([container.init.exited, timer])) === 'timeout') {
      container.init.child?.kill('SIGKILL');
      throw new Timeout('remove container', timeoutMs || 10_000, { containerId: id });
    }
  }
  await runCommand(paths.crun, ['delete', '--force', id]);
  forgetContainer(containers, container);
  await rm(container.stateDir, { recursive: true, force: true });
  for (let attempt = 0; attempt < 50; attempt++) {
    const done = await rmdir(container.leafCgroupDir)
      .catch(() => {})
      .then(() => rmdir(container.cgroupDir))
      .then(
        () => true,
        (err: NodeJS.ErrnoException) => err.code === 'ENOENT',
      );
    if (done) break;
    await sleep(50);
  }
  context.logger.info({ containerId: id }, 'container removed');
}
