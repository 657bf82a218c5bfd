// The runtime keeps every host path it binds into a sandbox clear of its state dir, whatever alias names it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { link, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { InvalidArgument } from '../src/errors/index.js';
import { type Harness, makeHarness } from './support/actors-harness.js';

const run = promisify(execFile);

describe('host paths given to a container', () => {
  let h: Harness;
  let safe: string;
  const sb = 'hp';
  let n = 0;

  before(async () => {
    h = await makeHarness();
    safe = join(h.dir, 'safe');
    await mkdir(safe);
    await writeFile(join(safe, 'hello.txt'), 'safe\n');
    await mkdir(join(h.stateDir, 'sandboxes'), { recursive: true });
    await h.runtime.createSandbox(sb, {});
    await h.runtime.startSandbox(sb);
  });

  after(async () => {
    await h.runtime.deleteSandbox(sb, { force: true }).catch(() => undefined);
    // The test's own bind mounts go before the harness removes the dir.
    await h.cleanup();
  });

  /** Asserts a create with `mounts` is refused naming `field`, and that nothing was recorded or bound. */
  async function refusedAt(
    field: string,
    mounts: { source: string; destination: string }[],
    bundle = h.bundle,
  ) {
    const seq = (await h.events()).length;
    const id = `c${++n}`;
    await assert.rejects(h.runtime.createContainer({ sandboxId: sb, id, bundle, mounts }), (err: unknown) => {
      assert.ok(err instanceof InvalidArgument, String(err));
      assert.equal(err.details.field, field);
      assert.match(err.message, /overlaps the sandboxd state dir/);
      return true;
    });
    assert.equal((await h.events()).length, seq, 'nothing was recorded');
    assert.throws(() => h.runtime.getContainer(sb, id), /not found/i, 'the id is free again');
  }

  it('refuses a symlink to the state dir, naming mounts.N.source', async () => {
    const link = join(h.dir, 'lnk');
    await symlink(h.stateDir, link);
    await refusedAt('mounts.1.source', [
      { source: safe, destination: '/ok' },
      { source: link, destination: '/data' },
    ]);
  });

  it('refuses a path with .. that leads into the state dir', async () => {
    await refusedAt('mounts.0.source', [{ source: `${safe}/../state/sandboxes`, destination: '/data' }]);
  });

  it('refuses a symlink to an ancestor of the state dir', async () => {
    const link = join(safe, 'up');
    await symlink(h.dir, link);
    await refusedAt('mounts.0.source', [{ source: link, destination: '/data' }]);
  });

  it('refuses a bind mount of the state dir, or of a part of it, made elsewhere', async () => {
    const whole = join(h.dir, 'bound-state');
    const part = join(h.dir, 'bound-part');
    await mkdir(whole);
    await mkdir(part);
    await run('mount', ['--bind', h.stateDir, whole]);
    await run('mount', ['--bind', join(h.stateDir, 'sandboxes'), part]);
    try {
      await refusedAt('mounts.0.source', [{ source: whole, destination: '/data' }]);
      await refusedAt('mounts.0.source', [{ source: part, destination: '/data' }]);
      await refusedAt('mounts.0.source', [{ source: join(part, sb), destination: '/data' }]);
    } finally {
      await run('umount', [part]);
      await run('umount', [whole]);
    }
  });

  it('refuses a bundle whose own bind or rootfs reaches the state dir, naming the bundle', async () => {
    const viaBind = join(h.dir, 'bundle-bind');
    await mkdir(join(viaBind, 'rootfs'), { recursive: true });
    await symlink(h.stateDir, join(h.dir, 'lnk2'));
    await writeFile(
      join(viaBind, 'config.json'),
      JSON.stringify({
        ociVersion: '1.0.2',
        root: { path: 'rootfs' },
        process: { args: ['sh'] },
        mounts: [{ destination: '/data', type: 'bind', source: join(h.dir, 'lnk2'), options: ['rbind'] }],
      }),
    );
    await refusedAt('bundle', [], viaBind);
    const viaRoot = join(h.dir, 'bundle-root');
    await mkdir(viaRoot);
    await writeFile(
      join(viaRoot, 'config.json'),
      JSON.stringify({ ociVersion: '1.0.2', root: { path: h.stateDir }, process: { args: ['sh'] } }),
    );
    await refusedAt('bundle', [], viaRoot);
  });

  it('refuses a hard link to a file of the state dir, and accepts a hard-linked file elsewhere', async () => {
    const secret = join(h.stateDir, 'secret.log');
    await writeFile(secret, 'log\n');
    await link(secret, join(h.dir, 'linked.log'));
    await assert.rejects(
      h.runtime.createContainer({
        sandboxId: sb,
        id: 'hard',
        bundle: h.bundle,
        mounts: [{ source: join(h.dir, 'linked.log'), destination: '/log' }],
      }),
      (err: unknown) =>
        err instanceof InvalidArgument &&
        err.details.field === 'mounts.0.source' &&
        /hard link/.test(err.message),
    );
    await writeFile(join(safe, 'twice.txt'), 'ok\n');
    await link(join(safe, 'twice.txt'), join(h.dir, 'twice.txt'));
    await h.runtime.createContainer({
      sandboxId: sb,
      id: 'hard-ok',
      bundle: h.bundle,
      mounts: [{ source: join(h.dir, 'twice.txt'), destination: '/twice' }],
    });
    await h.runtime.deleteContainer(sb, 'hard-ok');
  });

  it('binds what a symlink to a safe dir points at, and frees the id of a refused create', async () => {
    const link = join(h.dir, 'to-safe');
    await symlink(safe, link);
    await h.runtime.createContainer({
      sandboxId: sb,
      id: 'ok',
      bundle: h.bundle,
      mounts: [{ source: link, destination: '/data' }],
    });
    const bound = join(h.stateDir, 'sandboxes', sb, 'shared', '.volumes', 'ok', '0');
    assert.equal(await readFile(join(bound, 'hello.txt'), 'utf8'), 'safe\n');
    await h.runtime.deleteContainer(sb, 'ok');
  });

  it('refuses at bind time too: a source swapped for a symlink to the state dir after the check', async () => {
    const { bindVolumes } = await import('../src/actors/volumes.js');
    const { StateDirGuard } = await import('../src/actors/host-paths.js');
    const shared = join(h.dir, 'share');
    const swapped = join(h.dir, 'swapped');
    // What the command checked was a plain dir; what the bind finds is a link into the state dir.
    await symlink(join(h.stateDir, 'sandboxes'), swapped);
    await assert.rejects(
      bindVolumes(
        shared,
        'x',
        [{ source: swapped, destination: '/d' }],
        new StateDirGuard(h.stateDir),
        (i) => `mounts.${i}.source`,
      ),
      (err: unknown) => err instanceof InvalidArgument && err.details.field === 'mounts.0.source',
    );
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
    assert.equal(mountinfo.includes(shared), false, 'nothing was bound');
  });
});
