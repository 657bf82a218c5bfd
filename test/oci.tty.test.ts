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
  RUNC_CLI,
  runc,
  runcSpecBundle,
} from './support/oci.js';
import { consoleSession } from './support/oci-console.js';
import { closePodman, conmonPidsUsing, openPodman, type Podman } from './support/oci-podman.js';
import { until } from './support/vm.js';

const run = promisify(execFile);
const VM_MS = 300_000;

describe('sandboxd-runc terminals (real daemon, real VMs)', { timeout: 1_500_000 }, () => {
  let world: OciWorld;
  let podman: Podman | undefined;
  const cli = (...args: string[]) => [
    process.execPath,
    RUNC_CLI,
    '--root',
    world.root,
    '--sandboxd-socket',
    world.socket,
    ...args,
  ];

  before(async () => {
    world = await openOciWorld('sbx-tty-');
  });

  after(async () => {
    if (world) {
      await closePodman(world, podman);
      await world.close();
    }
  });

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
    const pidFile = join(world.dir, 'tty.pid');
    const session = consoleSession(
      join(world.dir, 'console.sock'),
      cli(
        'create',
        '--bundle',
        bundle,
        '--console-socket',
        join(world.dir, 'console.sock'),
        '--pid-file',
        pidFile,
        'tty',
      ),
      { trigger: '/dev/pts', rows: 33, cols: 77 },
    );
    try {
      const handed = await session.handed;
      assert.equal(handed.rc, 0, handed.stderr);
      assert.equal(handed.fds, 1, 'one fd (the master) in the SCM_RIGHTS message');
      assert.match(handed.name, /^\/dev\/pts\/\d+$/, 'the message names the slave, as runc sends it');
      const keeper = Number(await readFile(pidFile, 'utf8'));
      assert.ok(alive(keeper));
      assert.equal(JSON.parse((await runc(world, ['state', 'tty'])).stdout).status, 'created');
      assert.equal((await runc(world, ['start', 'tty'])).code, 0);
      const output = await session.output;
      // The guest's pty: a terminal device, its default size, then the size the caller set on the master.
      assert.match(output, /\/dev\/pts\/\d+\r\n24 80\r\n/);
      assert.match(output, /go\r\n33 77\r\n/, output);
      await until('the keeper ended', 30_000, async () => (alive(keeper) ? undefined : true));
      const state = JSON.parse((await runc(world, ['state', 'tty'])).stdout);
      assert.equal(state.status, 'stopped');
      assert.equal((await runc(world, ['delete', 'tty'])).code, 0);
    } finally {
      session.kill();
    }
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
    const pidFile = join(world.dir, 'exec.pid');
    const sock = join(world.dir, 'exec-console.sock');
    const session = consoleSession(
      sock,
      cli(
        'exec',
        '--detach',
        '--tty',
        '--console-socket',
        sock,
        '--pid-file',
        pidFile,
        '--process',
        processFile,
        'host',
      ),
      { trigger: '/dev/pts', rows: 41, cols: 101 },
    );
    try {
      const handed = await session.handed;
      assert.equal(handed.rc, 0, handed.stderr);
      assert.equal(handed.fds, 1);
      const keeper = Number(await readFile(pidFile, 'utf8'));
      assert.match(await readFile(`/proc/${keeper}/cmdline`, 'utf8'), /sandboxd-runc-keeper/);
      const output = await session.output;
      assert.match(output, /\/dev\/pts\/\d+\r\n/);
      assert.match(output, /go\r\n41 101\r\n/, output);
    } finally {
      session.kill();
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
    assert.equal((await podman('rm', '-f', 'bg')).code, 0);
    await until('conmon gone', 30_000, async () =>
      (await conmonPidsUsing(world.dir)).length === 0 ? true : undefined,
    );
    await assertNothingLeft(world);
  });
});
