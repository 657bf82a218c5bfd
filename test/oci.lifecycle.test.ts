// sandboxd-runc driven as runc is, on a bundle from `runc spec`, against a real daemon and real VMs:
// create/start/state/kill/delete with the keeper's exit seen by a subreaper (as conmon sees it), `state`
// checked against the runtime spec's state schema, every wrong-state call refused with nothing changed,
// a failed create leaving no trace, and no daemon meaning a clear error.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  alive,
  assertNothingLeft,
  createUnderSubreaper,
  type OciWorld,
  openOciWorld,
  runc,
  runcSpecBundle,
  runcState,
} from './support/oci.js';
import { until } from './support/vm.js';

const VM_MS = 300_000;

/** The runtime spec's state schema (schema/state-schema.json), plus runc's own status `paused`. */
function assertSpecState(s: Record<string, unknown>, id: string): void {
  for (const key of ['ociVersion', 'id', 'status', 'bundle']) {
    assert.equal(typeof s[key], 'string', `state.${key} is a required string`);
  }
  assert.equal(s.id, id);
  assert.ok(
    ['creating', 'created', 'running', 'stopped', 'paused'].includes(s.status as string),
    `status ${s.status}`,
  );
  assert.ok(isAbsolute(s.bundle as string), 'bundle is an absolute path');
  assert.ok(Number.isInteger(s.pid) && (s.pid as number) >= 0, 'pid is an integer >= 0');
  if (s.status === 'created' || s.status === 'running') assert.ok((s.pid as number) > 0, 'pid required');
  if (s.annotations !== undefined) {
    for (const v of Object.values(s.annotations as object)) assert.equal(typeof v, 'string');
  }
  // runc's extra members, as runc prints them.
  assert.equal(typeof s.rootfs, 'string');
  assert.ok(!Number.isNaN(Date.parse(s.created as string)), 'created is a time');
  assert.equal(typeof s.owner, 'string');
  const known = ['ociVersion', 'id', 'pid', 'status', 'bundle', 'rootfs', 'created', 'owner', 'annotations'];
  assert.deepEqual(
    Object.keys(s).filter((k) => !known.includes(k)),
    [],
  );
}

describe('sandboxd-runc: the runc lifecycle on a real daemon and VM', { timeout: 1_500_000 }, () => {
  let world: OciWorld;
  let bundle: string;

  const state = (id: string) => runcState(world, id);
  const lastSeq = async () =>
    (await world.api.call<{ events: { lastSeq: number } }>('daemon.info', {})).events.lastSeq;

  /** Runs a call that must be refused with `message`; the container's state and the daemon's log unchanged. */
  const refused = async (id: string, args: string[], message: RegExp) => {
    const before = [await state(id), await lastSeq()];
    const r = await runc(world, args);
    assert.equal(r.code, 1, `${args.join(' ')} must fail: ${r.stdout}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.deepEqual([await state(id), await lastSeq()], before, `${args.join(' ')} changed nothing`);
  };

  before(async () => {
    world = await openOciWorld();
    bundle = await runcSpecBundle(join(world.dir, 'bundle'), [
      'sh',
      '-c',
      'echo started; trap "echo got-term; exit 3" TERM; while true; do sleep 0.2; done',
    ]);
  });

  after(async () => {
    await world?.close();
  });

  it('says no daemon answers, and changes nothing', async () => {
    const nowhere = { root: world.root, socket: join(world.dir, 'nobody.sock') };
    for (const args of [['create', '--bundle', bundle, 'x'], ['state', 'x'], ['list']]) {
      const r = await runc(nowhere, args);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /sandboxd is not running \(no answer on .*nobody\.sock\)/);
    }
    assert.deepEqual(await readdir(world.root).catch(() => []), []);
    assert.deepEqual(await world.api.call('sandbox.list', {}), []);
  });

  it('answers state/delete of an unknown id as runc does ("does not exist"; delete --force succeeds)', async () => {
    const r = await runc(world, ['state', 'nosuch']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /container does not exist/);
    assert.match((await runc(world, ['delete', 'nosuch'])).stderr, /container does not exist/);
    assert.equal((await runc(world, ['delete', '--force', 'nosuch'])).code, 0);
    const bad = await runc(world, ['state', 'bad/id']);
    assert.match(bad.stderr, /invalid id format: bad\/id/);
  });

  it('refuses a bad bundle before anything is recorded', async () => {
    const seq = await lastSeq();
    const empty = join(world.dir, 'empty');
    await mkdir(empty);
    const r = await runc(world, ['create', '--bundle', empty, 'bad']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /config\.json/);
    assert.equal(await lastSeq(), seq);
    assert.deepEqual(await readdir(world.root).catch(() => []), []);
  });

  it('leaves no trace of a create the daemon refuses after the sandbox booted', {
    timeout: VM_MS,
  }, async () => {
    const nfs = await runcSpecBundle(join(world.dir, 'nfs'), ['true']);
    const spec = JSON.parse(await readFile(join(nfs, 'config.json'), 'utf8'));
    spec.mounts.push({ destination: '/mnt', type: 'nfs', source: 'server:/export', options: [] });
    // A host cgroup too (one level, so no parent is made): QEMU joined it at boot; the undo removes it.
    spec.linux.cgroupsPath = `/sbx-runc-nfs-${process.pid}`;
    await writeFile(join(nfs, 'config.json'), JSON.stringify(spec));
    const r = await runc(world, ['create', '--bundle', nfs, '--pid-file', join(world.dir, 'nfs.pid'), 'nfs']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /mounts\[\d+\]\.type/);
    await assertNothingLeft(world);
    const left = (await readdir('/sys/fs/cgroup')).filter((h) =>
      existsSync(join('/sys/fs/cgroup', h, spec.linux.cgroupsPath)),
    );
    assert.deepEqual(left, [], 'no host cgroup left after the failed create');
    assert.match((await runc(world, ['state', 'nfs'])).stderr, /does not exist/);
  });

  it('create, start, state, pause, resume, exec, kill, delete: states as the spec says, wrong calls refused', {
    timeout: VM_MS,
  }, async () => {
    const id = 'life';
    const pidFile = join(world.dir, 'life.pid');
    const stdout = join(world.dir, 'life.out');
    const keeper = createUnderSubreaper(
      world,
      ['create', '--bundle', bundle, '--pid-file', pidFile, id],
      stdout,
    );
    const pid = await keeper.created;

    const created = await state(id);
    assertSpecState(created, id);
    assert.equal(created.status, 'created');
    assert.equal(created.pid, pid, 'state pid is the keeper (the --pid-file pid)');
    assert.equal(Number(await readFile(pidFile, 'utf8')), pid);
    assert.ok(alive(pid));
    assert.equal(created.bundle, bundle);
    assert.equal(
      created.ociVersion,
      JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')).ociVersion,
    );

    await refused(id, ['create', '--bundle', bundle, id], /container with id exists: life/);
    await refused(id, ['pause', id], /container not running/);
    await refused(id, ['resume', id], /container not paused/);
    await refused(id, ['exec', id, 'true'], /cannot exec in a created container/);

    assert.equal((await runc(world, ['start', id])).code, 0);
    await until('the process wrote', 60_000, async () =>
      (await readFile(stdout, 'utf8')).includes('started\n') ? true : undefined,
    );
    const running = await state(id);
    assertSpecState(running, id);
    assert.equal(running.status, 'running');
    assert.equal(running.pid, pid);

    await refused(id, ['start', id], /cannot start an already running container/);
    await refused(id, ['delete', id], /cannot delete container life that is not stopped: running/);
    await refused(id, ['resume', id], /container not paused/);
    await refused(id, ['kill', id, 'NOSUCH'], /unknown signal "NOSUCH"/);

    const listed = await runc(world, ['list', '--format', 'json']);
    assert.deepEqual(
      (JSON.parse(listed.stdout) as { id: string; status: string }[]).map((s) => [s.id, s.status]),
      [[id, 'running']],
    );
    assert.equal((await runc(world, ['list', '-q'])).stdout, `${id}\n`);
    const ps = JSON.parse((await runc(world, ['ps', '--format', 'json', id])).stdout) as number[];
    assert.ok(ps.length >= 1 && ps.every(Number.isInteger), `ps: ${ps}`);

    const exec = await runc(world, ['exec', id, 'sh', '-c', 'echo in-exec; exit 5']);
    assert.equal(exec.code, 5, exec.stderr);
    assert.equal(exec.stdout, 'in-exec\n');

    assert.equal((await runc(world, ['pause', id])).code, 0);
    const paused = await state(id);
    assertSpecState(paused, id);
    assert.equal(paused.status, 'paused');
    await refused(id, ['pause', id], /container not running/);
    await refused(id, ['start', id], /cannot start an already running container/);
    assert.equal((await runc(world, ['resume', id])).code, 0);
    assert.equal((await state(id)).status, 'running');

    assert.equal((await runc(world, ['kill', id, 'TERM'])).code, 0);
    assert.equal(await keeper.exit, 3, "the keeper exits with the process's status");
    assert.match(await readFile(stdout, 'utf8'), /got-term\n$/);
    const stopped = await state(id);
    assertSpecState(stopped, id);
    assert.equal(stopped.status, 'stopped');
    assert.equal(stopped.pid, 0);

    await refused(id, ['start', id], /cannot start a container that has stopped/);
    await refused(id, ['kill', id, 'KILL'], /container not running/);
    await refused(id, ['pause', id], /container not running/);
    await refused(id, ['exec', id, 'true'], /cannot exec in a stopped container/);

    assert.equal((await runc(world, ['delete', id])).code, 0);
    assert.match((await runc(world, ['state', id])).stderr, /container does not exist/);
    await assertNothingLeft(world);
  });

  it('run: attached, stdin carried, the exit code passed on, the container deleted after', {
    timeout: VM_MS,
  }, async () => {
    const b = await runcSpecBundle(join(world.dir, 'run'), ['sh', '-c', 'read x; echo got $x; exit 7']);
    const r = await runc(world, ['run', '--bundle', b, 'runner'], { input: 'hello\n' });
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout, 'got hello\n');
    await assertNothingLeft(world);
  });

  it("prints --version in runc's shape and features as JSON", async () => {
    const v = await runc(world, ['--version']);
    assert.match(v.stdout, /^sandboxd-runc version \d+\.\d+\.\d+\ncommit: \S+\nspec: 1\.\d+\.\d+\n/);
    const f = JSON.parse((await runc(world, ['features'])).stdout) as {
      ociVersionMax: string;
      hooks: string[];
    };
    assert.equal(f.ociVersionMax, '1.2.0');
    assert.ok(f.hooks.includes('prestart'));
  });
});
