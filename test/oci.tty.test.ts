// Terminals through sandboxd-runc, against a real daemon and real VMs: `create --console-socket` of a bundle
// with process.terminal hands the caller a host pty master over SCM_RIGHTS (as runc does), the process sees a
// terminal and follows its resizes; `exec --tty --console-socket --detach` likewise (conmon's exec); podman's
// `run -t … tty` and `exec -it` (driven through tmux: `stty size` follows a resize of the window).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import {
  alive,
  assertNothingLeft,
  type OciWorld,
  openOciWorld,
  runc,
  runcSpecBundle,
  runcState,
} from './support/oci.js';
import { withConsole } from './support/oci-console.js';
import { closePodmanWorld, openPodman, type Podman, podmanRemove } from './support/oci-podman.js';
import { until } from './support/vm.js';

const run = promisify(execFile);
const VM_MS = 300_000;

describe('sandboxd-runc terminals (real daemon, real VMs)', { timeout: 1_500_000 }, () => {
  let world: OciWorld;
  let podman: Podman | undefined;
  before(async () => {
    world = await openOciWorld('sbx-tty-');
  });

  after(() => closePodmanWorld(world, podman));

  it('create --console-socket: the pty master arrives over SCM_RIGHTS; the process has a terminal that resizes', {
    timeout: VM_MS,
  }, async () => {
    const bundle = await runcSpecBundle(join(world.dir, 'tty'), [
      'sh',
      '-c',
      // The guest applies a resize on its own path: the process polls its terminal's size (real state).
      'tty; stty size; read x; while [ "$(stty size)" != "33 77" ]; do sleep 0.1; done; stty size; exit 5',
    ]);
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8'));
    spec.process.terminal = true;
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
    await withConsole(
      world,
      { command: ['create', '--bundle', bundle], target: 'tty', rows: 33, cols: 77 },
      async ({ keeper, output }) => {
        assert.ok(alive(keeper));
        assert.equal((await runcState(world, 'tty')).status, 'created');
        assert.equal((await runc(world, ['start', 'tty'])).code, 0);
        const text = await output;
        // The guest's pty: a terminal device, its default size, then the size the caller set on the master.
        assert.match(text, /\/dev\/pts\/\d+\r\n24 80\r\n/);
        assert.match(text, /go\r\n33 77\r\n/, text);
        await until('the keeper ended', 30_000, async () => (alive(keeper) ? undefined : true));
        assert.equal((await runcState(world, 'tty')).status, 'stopped');
        assert.equal((await runc(world, ['delete', 'tty'])).code, 0);
      },
    );
    await assertNothingLeft(world);
  });

  it('exec --tty --console-socket --detach --process (as conmon runs it): a terminal for the exec', {
    timeout: VM_MS,
  }, async () => {
    const bundle = await runcSpecBundle(join(world.dir, 'host'), ['sleep', '100000']);
    const created = await runc(world, ['run', '--detach', '--bundle', bundle, 'host'], { untilExit: true });
    assert.equal(created.code, 0, created.stderr);
    const processFile = join(world.dir, 'exec.json');
    await writeFile(
      processFile,
      JSON.stringify({
        args: [
          'sh',
          '-c',
          'tty; read x; while [ "$(stty size)" != "41 101" ]; do sleep 0.1; done; stty size',
        ],
        cwd: '/',
        terminal: true,
        env: ['TERM=xterm', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
      }),
    );
    try {
      await withConsole(
        world,
        {
          command: ['exec', '--detach', '--tty', '--process', processFile],
          target: 'host',
          rows: 41,
          cols: 101,
        },
        async ({ keeper, output }) => {
          assert.match(await readFile(`/proc/${keeper}/cmdline`, 'utf8'), /sandboxd-runc-keeper/);
          const text = await output;
          assert.match(text, /\/dev\/pts\/\d+\r\n/);
          assert.match(text, /go\r\n41 101\r\n/, text);
        },
      );
    } finally {
      assert.equal((await runc(world, ['delete', '--force', 'host'])).code, 0);
    }
    await assertNothingLeft(world);
  });

  it('podman run -t busybox tty prints /dev/pts/N', { timeout: VM_MS }, async () => {
    podman = await openPodman(world);
    const r = await podman('run', '--rm', '-t', '--network', 'none', 'busybox', 'tty');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\/dev\/pts\/\d+\r?\n$/);
    await assertNothingLeft(world);
  });

  it('podman exec -it in tmux: a shell on a terminal whose `stty size` follows the window', {
    timeout: VM_MS,
  }, async () => {
    assert.ok(podman, 'podman was set up by the case before');
    const d = await podman('run', '-d', '--network', 'none', '--name', 'bg', 'busybox', 'sleep', '100000');
    assert.equal(d.code, 0, d.stderr);
    const server = `sbx-tty-${process.pid}`;
    const tmux = (...args: string[]) => run('tmux', ['-L', server, ...args]);
    const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
    const command = [
      `CONTAINERS_CONF=${quote(podman.env.CONTAINERS_CONF!)}`,
      ...podman.argv,
      'exec',
      '-it',
      'bg',
      'sh',
    ]
      .map((a, i) => (i === 0 ? a : quote(a)))
      .join(' ');
    await tmux('new-session', '-d', '-x', '100', '-y', '30', command);
    try {
      const screen = async () => (await tmux('capture-pane', '-p')).stdout;
      const shows = (what: string, ms: number) =>
        until(what, ms, async () => ((await screen()).includes(what) ? true : undefined)).catch(
          async (err) => {
            throw new Error(
              `${(err as Error).message}; the screen:\n${await screen().catch((e) => String(e))}`,
            );
          },
        );
      await shows('/ #', 120_000);
      await tmux('send-keys', 'stty size', 'Enter');
      await shows('30 100', 60_000);
      await tmux('resize-window', '-x', '120', '-y', '40');
      await tmux('send-keys', 'stty size', 'Enter');
      await shows('40 120', 60_000);
      await tmux('send-keys', 'exit', 'Enter');
      await until('the exec ended', 60_000, async () =>
        (await tmux('list-sessions').then(
          () => false,
          () => true,
        ))
          ? true
          : undefined,
      );
    } finally {
      await tmux('kill-server').catch(() => undefined);
    }
    await podmanRemove(world, podman, 'bg', { force: true });
  });
});
