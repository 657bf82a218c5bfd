// `sandboxctl run` and `exec run` against a daemon (the real runtime over the fake world): signals at any
// stage end the command and clean up (issue 12 item 2), a 0×0 terminal (item 8), what a failed cleanup says
// (item 9), and -q never hiding a failure (item 11).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { ApiClient } from '../src/api/index.js';
import { HypervisorError } from '../src/errors/index.js';
import { gate, type Harness, startHarness, withApi } from './support/api-harness.js';

const CLI = join(import.meta.dirname, '..', 'src', 'cli', 'main.js');

interface Ran {
  readonly child: ChildProcess;
  /** Everything the CLI wrote to stderr so far. */
  stderr(): string;
  readonly exited: Promise<number | null>;
}

function sandboxctl(socket: string, args: string[], viaScript = false): Ran {
  const argv = [CLI, '--socket', socket, ...args];
  // script(1) gives the CLI a pseudo-terminal; `stty` makes it report 0×0 as some CI and ssh ptys do.
  const child = viaScript
    ? spawn(
        'script',
        ['-qec', `stty rows 0 cols 0; exec ${[process.execPath, ...argv].join(' ')}`, '/dev/null'],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      )
    : spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (b: Buffer) => {
    err += b.toString();
  });
  child.stdout?.on('data', (b: Buffer) => {
    if (viaScript) err += b.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, stderr: () => err, exited };
}

/** Polls until `probe` is true (20 ms steps, bounded). */
async function until(what: string, probe: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const containerRunning =
  (c: ApiClient, sandboxId: string, id = 'main') =>
  async () => {
    const view = await c
      .call<{ state: string }>('container.state', { sandboxId, id })
      .catch(() => ({ state: 'none' }));
    return view.state === 'running';
  };

function sandboxGone(h: Harness, id: string): boolean {
  return !h.runtime.listSandboxes().some((s) => s.id === id && s.state !== 'deleted') && !h.world.vms.has(id);
}

describe('sandboxctl run: signals', () => {
  let h: Harness;
  let c: ApiClient;
  withApi((api) => {
    ({ h, c } = api);
  });

  it('SIGTERM during the boot cancels run --rm: exit 143, the boot aborted, the sandbox deleted', async () => {
    const boot = gate(h.hypervisor, 'launch');
    const run = sandboxctl(h.socketPath, ['run', '--rm', '--name', 'sig1', h.apiBundle, '--', 'sleep', '60']);
    await boot.reached;
    run.child.kill('SIGTERM');
    // The CLI asks for the forced delete while QEMU is still "launching"; only then does the launch go on.
    await until('the delete request', async () =>
      (await h.events()).some((e) => e.stream === 'sandbox-sig1' && e.type === 'SandboxDeleteRequested'),
    );
    boot.release();
    assert.equal(await run.exited, 143, run.stderr());
    assert.ok(sandboxGone(h, 'sig1'), 'no sandbox, no VM left');
    assert.match(run.stderr(), /sandbox sig1 deleted/);
  });

  it('SIGINT twice during the boot still deletes before exiting 130', async () => {
    const boot = gate(h.hypervisor, 'launch');
    const run = sandboxctl(h.socketPath, ['run', '--rm', '--name', 'sig2', h.apiBundle, '--', 'true']);
    await boot.reached;
    run.child.kill('SIGINT');
    run.child.kill('SIGINT');
    await until('the delete request', async () =>
      (await h.events()).some((e) => e.stream === 'sandbox-sig2' && e.type === 'SandboxDeleteRequested'),
    );
    boot.release();
    assert.equal(await run.exited, 130, run.stderr());
    assert.ok(sandboxGone(h, 'sig2'));
  });

  it('without --rm a cancelled run keeps the sandbox and says how to remove it', async () => {
    const boot = gate(h.hypervisor, 'launch');
    const run = sandboxctl(h.socketPath, ['run', '--name', 'sig3', h.apiBundle, '--', 'true']);
    await boot.reached;
    boot.release();
    await until('the sandbox running', () =>
      h.runtime.listSandboxes().some((s) => s.id === 'sig3' && s.state === 'running'),
    );
    run.child.kill('SIGHUP');
    assert.equal(await run.exited, 129, run.stderr());
    assert.match(run.stderr(), /sandbox sig3 kept; `sandboxctl sandbox delete --force sig3` removes it/);
    await c.call('sandbox.delete', { id: 'sig3', force: true });
  });

  it('SIGINT to a running container that ignores it: SIGKILL after the grace, exit 130, sandbox deleted', async () => {
    const run = sandboxctl(h.socketPath, ['run', '--rm', '--name', 'sig4', h.apiBundle, '--', 'sleep', '60']);
    await until('the container running', containerRunning(c, 'sig4'));
    const sent = Date.now();
    // The fake world's processes ignore SIGINT, as a shell as PID 1 does.
    run.child.kill('SIGINT');
    assert.equal(await run.exited, 130, run.stderr());
    assert.ok(Date.now() - sent >= 2500, 'the grace was given');
    assert.ok(sandboxGone(h, 'sig4'));
  });

  it('SIGTERM to a running container that it ends by: its own 143, sandbox deleted', async () => {
    const run = sandboxctl(h.socketPath, ['run', '--rm', '--name', 'sig5', h.apiBundle, '--', 'sleep', '60']);
    await until('the container running', containerRunning(c, 'sig5'));
    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 143, run.stderr());
    assert.ok(sandboxGone(h, 'sig5'));
  });

  it('exec run: SIGINT is forwarded, then SIGKILL: the process ends and the command exits 130', async () => {
    await c.call('sandbox.create', { id: 'sig6', config: {} });
    await c.call('sandbox.start', { id: 'sig6' });
    await c.call('container.create', { sandboxId: 'sig6', id: 'c1', bundle: h.apiBundle });
    await c.call('container.start', { sandboxId: 'sig6', id: 'c1' });
    const run = sandboxctl(h.socketPath, ['exec', 'run', '--id', 'e1', 'sig6', 'c1', '--', 'sleep', '60']);
    await until('the exec running', async () => {
      const e = await c
        .call<{ state: string }>('exec.wait', {
          sandboxId: 'sig6',
          containerId: 'c1',
          execId: 'e1',
          timeoutMs: 1,
        })
        .catch((err: { data?: { code?: string } }) => ({ state: err.data?.code ?? 'none' }));
      return e.state === 'Timeout';
    });
    run.child.kill('SIGINT');
    assert.equal(await run.exited, 130, run.stderr());
    const status = await c.call<{ exitCode: number }>('exec.wait', {
      sandboxId: 'sig6',
      containerId: 'c1',
      execId: 'e1',
    });
    assert.equal(status.exitCode, 137);
    await c.call('sandbox.delete', { id: 'sig6', force: true });
  });

  it('run -t on a terminal that reports 0×0 leaves the size out instead of failing', async () => {
    const run = sandboxctl(
      h.socketPath,
      ['run', '--rm', '-t', '--name', 'tty0', h.apiBundle, '--', 'sh'],
      true,
    );
    await until('the container running', containerRunning(c, 'tty0'), 15_000).catch((err: Error) => {
      throw new Error(`${err.message}; the CLI said: ${run.stderr().slice(-2000)}`);
    });
    h.world.exitProcess('tty0', 'main', '', { exitCode: 0 });
    assert.equal(await run.exited, 0, run.stderr());
  });

  it('sandbox create --start whose start fails says the sandbox was created and is left (item 12)', async () => {
    h.world.failures.launch = new HypervisorError('launch', 'port 8080 is taken', { sandboxId: 'cs1' });
    try {
      const run = sandboxctl(h.socketPath, ['sandbox', 'create', 'cs1', '--start']);
      assert.equal(await run.exited, 8, run.stderr());
      assert.match(
        run.stderr(),
        /sandbox cs1 was created but did not start \(now \w+\): `sandboxctl sandbox start cs1` retries, `sandboxctl sandbox delete cs1` removes it/,
      );
    } finally {
      delete h.world.failures.launch;
    }
    await c.call('sandbox.delete', { id: 'cs1', force: true });
  });

  it('run -q still says why a run failed', async () => {
    const run = sandboxctl(h.socketPath, ['run', '-q', '--rm', join(h.dir, 'no-such-bundle'), '--', 'true']);
    assert.equal(await run.exited, 125);
    assert.match(run.stderr(), /run: .*no-such-bundle/);
  });
});

describe('sandboxctl run: the daemon dies mid-run', () => {
  it('says the sandbox could not be deleted and how to remove it, never that it was deleted', async () => {
    const h = await startHarness();
    try {
      const c = await (await import('../src/api/index.js')).connectApi(h.socketPath);
      const run = sandboxctl(h.socketPath, ['run', '--rm', '--name', 'k9', h.apiBundle, '--', 'sleep', '60']);
      await until('the container running', containerRunning(c, 'k9'));
      c.close();
      await h.server.close({ graceMs: 0 });
      assert.equal(await run.exited, 125, run.stderr());
      assert.match(
        run.stderr(),
        /could not delete sandbox k9: .*`sandboxctl sandbox delete --force k9` removes it/,
      );
      assert.doesNotMatch(run.stderr(), /sandbox k9 deleted/);
    } finally {
      await h.close();
    }
  });
});
