// A daemon records its socket in its state dir: `--state-dir DIR events …` reaches it without touching its
// store (issue 12 item 10), and a second daemon is refused before it creates or opens anything (item 18).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { DAEMON_RECORD } from '../src/api/index.js';
import { type Daemon, startDaemon } from '../src/daemon/daemon.js';
import { fakeImage } from './support/actors-harness.js';
import { FakeAgent, FakeHypervisor, FakeWorld } from './support/fake-world.js';

const CLI = join(import.meta.dirname, '..', 'src', 'cli', 'main.js');
const silent = pino({ level: 'silent' });

function fakeParts() {
  const world = new FakeWorld();
  return { hypervisor: new FakeHypervisor(world), agent: new FakeAgent(world), image: fakeImage };
}

function sandboxctl(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    // The default socket is not the daemon's: only the record in the state dir can lead there.
    const env = { ...process.env, SANDBOXD_SOCKET: '/nonexistent/sandboxd.sock' };
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

describe('a daemon found through its state dir', () => {
  let dir = '';
  let stateDir = '';
  let daemon: Daemon;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-discovery-'));
    stateDir = join(dir, 'state');
    daemon = await startDaemon({
      stateDir,
      socketPath: join(dir, 'a.sock'),
      logger: silent,
      parts: fakeParts(),
    });
    await daemon.runtime.createSandbox('d1', {});
  });
  after(async () => {
    await daemon.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('records its pid and socket in the state dir', async () => {
    const record = JSON.parse(await readFile(join(stateDir, DAEMON_RECORD), 'utf8'));
    assert.equal(record.socket, join(dir, 'a.sock'));
    assert.equal(record.pid, process.pid);
  });

  it('`--state-dir DIR events ls` goes through that daemon and leaves its LevelDB LOG alone', async () => {
    const log = await readFile(join(stateDir, 'events', 'LOG'), 'utf8');
    const r = await sandboxctl(['--state-dir', stateDir, 'events', 'ls', '--json']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /SandboxCreated/);
    assert.equal(existsSync(join(stateDir, 'events', 'LOG.old')), false, 'LOG not rotated');
    assert.equal(await readFile(join(stateDir, 'events', 'LOG'), 'utf8'), log);
  });

  it('`events ls --type` refuses an unknown type, naming the known ones (issue 12 item 17)', async () => {
    const r = await sandboxctl(['--state-dir', stateDir, 'events', 'ls', '--type', 'SandboxStart']);
    assert.equal(r.code, 2);
    assert.match(r.err, /'SandboxStart' is invalid\. unknown event type; known types: .*SandboxStarted/);
    assert.equal(r.out, '');
  });

  it('refuses a second daemon on the same socket before creating its state dir', async () => {
    const other = join(dir, 'other-state');
    await assert.rejects(
      startDaemon({ stateDir: other, socketPath: join(dir, 'a.sock'), logger: silent, parts: fakeParts() }),
      (err: Error & { kind?: string }) => err.kind === 'StateDirInUse' && /a\.sock/.test(err.message),
    );
    assert.equal(existsSync(other), false, 'nothing created');
  });

  it('refuses a second daemon on the same state dir before opening its log, naming the holder', async () => {
    await assert.rejects(
      startDaemon({ stateDir, socketPath: join(dir, 'b.sock'), logger: silent, parts: fakeParts() }),
      (err: Error & { kind?: string }) =>
        err.kind === 'StateDirInUse' && err.message.includes(`pid ${process.pid}`),
    );
    assert.equal(existsSync(join(stateDir, 'events', 'LOG.old')), false, 'LOG not rotated');
    assert.equal(existsSync(join(dir, 'b.sock')), false);
  });

  it('forgets the record when it stops', async () => {
    const d = await startDaemon({
      stateDir: join(dir, 'short'),
      socketPath: join(dir, 'c.sock'),
      logger: silent,
      parts: fakeParts(),
    });
    assert.ok(existsSync(join(dir, 'short', DAEMON_RECORD)));
    await d.close();
    assert.equal(existsSync(join(dir, 'short', DAEMON_RECORD)), false);
  });
});
