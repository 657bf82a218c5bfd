// The shim end to end: a real containerd (Debian's 1.6, in a temp dir) runs tasks with
// `--runtime io.containerd.sandboxd.v1` through containerd-shim-sandboxd-v1, a real sandboxd daemon and
// real VMs. One daemon and one containerd for the file.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { unmountAllUnder } from '../src/actors/index.js';
import { shimSocketPath } from '../src/shim/index.js';
import { type Containerd, startContainerd, until } from './support/containerd.js';
import { CLI, DAEMON, spawnUntil } from './support/processes.js';
import { qemuPidsUsing } from './support/vm.js';

const run = promisify(execFile);
const SHIM = fileURLToPath(new URL('../src/shim/main.js', import.meta.url));
const IMAGE_SCRIPT = fileURLToPath(new URL('../../scripts/test-image.sh', import.meta.url));
const VM_MS = 300_000;
const RUNTIME = 'io.containerd.sandboxd.v1';
const IMAGE = 'docker.io/library/busybox:latest';

describe('containerd shim with a real containerd, sandboxd and VMs', { timeout: 1_800_000 }, () => {
  let dir: string;
  let daemon: ChildProcess;
  let ctrd: Containerd;
  let socket: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shim-e2e-'));
    socket = join(dir, 'sandboxd.sock');
    const d = await spawnUntil(
      DAEMON,
      ['--state-dir', join(dir, 'state'), '--socket', socket],
      /"msg":"ready"/,
      {
        timeoutMs: 60_000,
      },
    );
    daemon = d.child;
    // containerd finds the shim on its PATH by the runtime's name, as it would /usr/local/bin's.
    const bin = join(dir, 'bin');
    await mkdir(bin);
    await chmod(SHIM, 0o755); // tsc writes it 0644; setup.sh does the same for /usr/local/bin's link
    await symlink(SHIM, join(bin, 'containerd-shim-sandboxd-v1'));
    ctrd = await startContainerd({
      env: {
        PATH: `${bin}:${process.env.PATH}`,
        SANDBOXD_SOCKET: socket,
        SANDBOXD_SHIM_SOCKET_DIR: join(dir, 's'),
      },
    });
    const tar = (await run('bash', [IMAGE_SCRIPT])).stdout.trim();
    const imported = await ctrd.ctr(['images', 'import', tar]);
    assert.equal(imported.code, 0, imported.stderr);
  });

  after(async () => {
    await ctrd?.stop();
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon.once('exit', r));
    }
    for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
    await unmountAllUnder(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  it('ctr run --rm prints hi and exits 3, and the same id runs again at once', {
    timeout: VM_MS * 2,
  }, async () => {
    for (let round = 0; round < 2; round++) {
      const r = await ctrd.ctr(
        ['run', '--runtime', RUNTIME, '--rm', IMAGE, 't1', 'sh', '-c', 'echo hi; exit 3'],
        {
          timeoutMs: VM_MS,
        },
      );
      const shimLog = async () =>
        readFile(`${shimSocketPath(ctrd.address).replace(/^.*\//, join(dir, 's/'))}.log`, 'utf8').catch(
          () => '',
        );
      assert.equal(r.code, 3, `round ${round}: ${r.stderr}\n${await shimLog()}`);
      assert.equal(r.stdout, 'hi\n', `round ${round}: ${r.stderr}\n${await shimLog()}`);
    }
    const tasks = await ctrd.ctr(['task', 'ls', '-q']);
    assert.equal(tasks.stdout.trim(), '');
    const containers = await ctrd.ctr(['containers', 'ls', '-q']);
    assert.equal(containers.stdout.trim(), '');
  });

  it('leaves no sandbox behind and the shim server exits once no task remains', {
    timeout: VM_MS,
  }, async () => {
    const list = await run(process.execPath, [CLI, '--socket', socket, 'call', 'sandbox.list']);
    assert.deepEqual(JSON.parse(list.stdout), []);
    await until('the shim server to exit', async () => {
      const left = await readdir(join(dir, 's')).catch((): string[] => []);
      return left.includes(shimSocketPath(ctrd.address).split('/').pop() as string) ? undefined : true;
    });
  });
});
