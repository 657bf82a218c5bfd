// Host hooks run as the runtime spec says: state JSON on stdin, their own argv and env, killed at their timeout.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { type HookState, runHooks } from '../src/bundle/index.js';
import { Internal } from '../src/errors/index.js';

const logger = pino({ level: 'silent' });
const state: HookState = {
  ociVersion: '1.0.2',
  id: 'c1',
  status: 'creating',
  pid: 4242,
  bundle: '/b/c1',
  annotations: { a: 'b' },
};

describe('host hooks', () => {
  let dir = '';
  let record = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-hooks-'));
    record = join(dir, 'hook.sh');
    // Appends what it got: its args, the environment it was started with (not the shell's), its whole stdin.
    await writeFile(
      record,
      `#!/bin/sh\n{ echo "args=$* env=$(tr '\\0' ' ' < /proc/$$/environ)"; cat; echo; } >> "${dir}/log"\nexit \${FAIL:-0}\n`,
    );
    await chmod(record, 0o755);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives each hook the state on stdin, its args and exactly its env, in order', async () => {
    await runHooks(
      'prestart',
      [
        { path: record, args: ['first', 'x', 'y'], env: ['A=1'] },
        { path: record, env: ['A=2', 'B=x=y'] },
      ],
      state,
      { logger },
    );
    const lines = (await readFile(join(dir, 'log'), 'utf8')).trim().split('\n');
    assert.equal(lines[0], 'args=x y env=A=1 ');
    assert.deepEqual(JSON.parse(lines[1] ?? ''), state);
    assert.equal(lines[2], 'args= env=A=2 B=x=y ');
  });

  it('starts a hook with args[0] as its argv[0] (busybox picks its applet by it)', async () => {
    const out = join(dir, 'argv0');
    await runHooks('poststart', [{ path: '/bin/busybox', args: ['sh', '-c', `echo ran > ${out}`] }], state, {
      logger,
    });
    assert.equal(await readFile(out, 'utf8'), 'ran\n');
  });

  it('fails a createRuntime phase at the first failing hook, naming the step and the exit', async () => {
    await rm(join(dir, 'log'), { force: true });
    await assert.rejects(
      runHooks(
        'createRuntime',
        [
          { path: record, env: ['FAIL=3'] },
          { path: record, env: ['A=never'] },
        ],
        state,
        { logger },
      ),
      (err: unknown) =>
        err instanceof Internal && /hook createRuntime\[0\]/.test(JSON.stringify(err.details) + err.message)
          ? /exited 3/.test(err.message)
          : false,
    );
    const log = await readFile(join(dir, 'log'), 'utf8');
    assert.doesNotMatch(log, /never/);
  });

  it('kills a hook at its timeout and fails the phase', async () => {
    const slow = join(dir, 'slow.sh');
    await writeFile(slow, '#!/bin/sh\nexec sleep 30\n');
    await chmod(slow, 0o755);
    const started = Date.now();
    await assert.rejects(
      runHooks('prestart', [{ path: slow, timeout: 1 }], state, { logger }),
      /timed out after 1 s/,
    );
    assert.ok(Date.now() - started < 10_000);
  });

  it('warns and goes on for poststart and poststop failures, a missing binary included', async () => {
    await rm(join(dir, 'log'), { force: true });
    await runHooks(
      'poststop',
      [{ path: join(dir, 'missing') }, { path: record, env: ['FAIL=1'] }, { path: record, env: ['A=last'] }],
      { ...state, status: 'stopped' },
      { logger },
    );
    assert.match(await readFile(join(dir, 'log'), 'utf8'), /A=last/);
  });
});
