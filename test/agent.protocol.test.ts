// The agent protocol end to end on the host: GrpcAgent ⇄ relay ⇄ emulated serial port ⇄ guest agent (no VM, no crun).
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { filter, firstValueFrom, take, toArray } from 'rxjs';
import { ACK_MAGIC, createGrpcAgent, type GrpcAgent, SYNC_MAGIC } from '../src/agent/index.js';
import { InvalidArgument, NotFound, Timeout } from '../src/errors/index.js';
import { defaultGuestPaths, type GuestAgent, OutputBuffer, startGuestAgent } from '../src/guest/index.js';
import { SerialEmulator } from './fixtures/agent-serial-emulator.js';

const logger = pino({ level: 'silent' });
const protoPath = new URL('../../proto/agent.proto', import.meta.url).pathname;

describe('agent protocol over an emulated serial port', { timeout: 60_000 }, () => {
  let work: string;
  let shared: string;
  let scratch: string;
  let emulator: SerialEmulator;
  let guest: GuestAgent;
  let agent: GrpcAgent;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'sbx-agent-proto-'));
    shared = join(work, 'shared');
    scratch = join(work, 'scratch');
    await mkdir(shared);
    await mkdir(scratch);
    emulator = await SerialEmulator.listen(join(work, 'agent.sock'));
    guest = startGuestAgent({
      port: emulator.port,
      protoPath,
      paths: {
        ...defaultGuestPaths(shared),
        stateDir: join(work, 'state'),
        cgroupRoot: join(work, 'cgroup'),
      },
      logger,
      imageVersion: 'test-image',
      copyRoots: [shared, scratch],
      idlePollMs: 10,
    });
    agent = createGrpcAgent({ logger, callDeadlineMs: 5_000 });
    await agent.connect('sb1', emulator.socketPath, { deadlineMs: 10_000 });
  });

  after(async () => {
    await agent?.close();
    await guest?.stop();
    await emulator?.close();
    await rm(work, { recursive: true, force: true });
  });

  it('answers Check with the agent version', async () => {
    const { version } = await agent.check('sb1');
    assert.match(version, /^\d+\.\d+\.\d+$/);
  });

  it('reports guest details from the running kernel', async () => {
    const details = await agent.getGuestDetails('sb1');
    assert.ok(details.kernel.length > 0);
    assert.ok(details.cpus >= 1);
    assert.ok(details.memTotalBytes > 0);
    assert.equal(details.agentVersion, (await agent.check('sb1')).version);
  });

  it('copies a file into the share with its mode', async () => {
    await agent.copyFile('sb1', join(shared, 'dir/hello.txt'), Buffer.from('hello'), 0o600);
    assert.equal(await readFile(join(shared, 'dir/hello.txt'), 'utf8'), 'hello');
    assert.equal((await stat(join(shared, 'dir/hello.txt'))).mode & 0o777, 0o600);
  });

  it('refuses path traversal, paths outside the sandbox dirs and symlink escapes', async () => {
    await assert.rejects(agent.copyFile('sb1', `${shared}/../escape.txt`, Buffer.from('x')), InvalidArgument);
    await assert.rejects(agent.copyFile('sb1', join(work, 'outside.txt'), Buffer.from('x')), InvalidArgument);
    await assert.rejects(agent.copyFile('sb1', 'relative.txt', Buffer.from('x')), InvalidArgument);
    await symlink(work, join(shared, 'link'));
    await assert.rejects(
      agent.copyFile('sb1', join(shared, 'link/evil.txt'), Buffer.from('x')),
      InvalidArgument,
    );
    await assert.rejects(stat(join(work, 'escape.txt')), { code: 'ENOENT' });
    await assert.rejects(stat(join(work, 'evil.txt')), { code: 'ENOENT' });
  });

  it('maps an unknown container to NotFound and a bad signal to InvalidArgument', async () => {
    await assert.rejects(agent.statsContainer('sb1', 'nope'), NotFound);
    await assert.rejects(agent.waitProcess('sb1', 'nope', ''), NotFound);
    await assert.rejects(
      agent.createContainer('sb1', { containerId: 'c1', bundle: '../x' }),
      InvalidArgument,
    );
    await assert.rejects(
      agent.createContainer('sb1', { containerId: 'bad id!', bundle: 'x' }),
      InvalidArgument,
    );
    await assert.rejects(
      agent.createContainer('sb1', { containerId: 'c1', bundle: 'missing' }),
      InvalidArgument,
    );
  });

  it('lists no containers before any was created', async () => {
    assert.deepEqual(await agent.listContainers('sb1'), []);
  });

  it('delivers agent events as they happen', async () => {
    const next = firstValueFrom(agent.events('sb1'));
    guest.events.publish({ type: 'oom', containerId: 'c9' });
    assert.deepEqual(await next, { type: 'oom', containerId: 'c9' });
  });

  it('survives a dropped connection with stale bytes on both sides and carries on', async () => {
    const handshakesBefore = agent.relayOf('sb1')!.handshakes;
    agent.relayOf('sb1')!.dropConnection();
    // What a crashed session leaves behind: half an HTTP/2 frame towards the guest, an old ACK and junk towards the host.
    emulator.injectToGuest(Buffer.from([0, 0, 40, 0, 0, 0, 0, 0, 1, 7, 7, 7]));
    emulator.injectToHost(Buffer.concat([ACK_MAGIC, Buffer.alloc(16, 9), Buffer.from('stale http2 bytes')]));
    const { version } = await agent.check('sb1');
    assert.ok(version);
    assert.ok(agent.relayOf('sb1')!.handshakes > handshakesBefore);
  });

  it('resyncs when a new host arrives before the guest saw the old one leave', async () => {
    const sessionsBefore = guest.channel.sessions;
    // A SYNC at a frame boundary of the live session, as a new host would send it.
    agent.relayOf('sb1')!.dropConnection();
    emulator.injectToGuest(Buffer.concat([SYNC_MAGIC, Buffer.alloc(16, 3)]));
    await agent.check('sb1');
    assert.ok(guest.channel.sessions > sessionsBefore);
  });

  it('lets a new client (a restarted daemon) reconnect and resume events without repeats', async () => {
    const seen = firstValueFrom(
      agent
        .events('sb1')
        .pipe(filter((event) => event.type === 'oom' && event.containerId === 'before-restart')),
    );
    guest.events.publish({ type: 'oom', containerId: 'before-restart' });
    await seen;
    await agent.disconnect('sb1');
    emulator.dropHost();

    const restarted = createGrpcAgent({ logger, callDeadlineMs: 5_000 });
    try {
      // A fresh daemon starts from seq 0: it gets the history, then what follows.
      const events = firstValueFrom(
        restarted.events('sb1').pipe(
          filter((event) => event.type === 'oom'),
          take(3),
          toArray(),
        ),
      );
      await restarted.connect('sb1', emulator.socketPath, { deadlineMs: 10_000 });
      guest.events.publish({ type: 'oom', containerId: 'after-restart' });
      const ids = (await events).map((event) => (event.type === 'oom' ? event.containerId : ''));
      assert.deepEqual(ids, ['c9', 'before-restart', 'after-restart']);
      assert.equal((await restarted.check('sb1')).version.length > 0, true);
    } finally {
      await restarted.close();
    }
    agent = createGrpcAgent({ logger, callDeadlineMs: 5_000 });
    await agent.connect('sb1', emulator.socketPath, { deadlineMs: 10_000 });
  });

  it('finds a restarted agent (new boot id) again through keepalive, and its events from seq 1', async () => {
    const quick = createGrpcAgent({ logger, callDeadlineMs: 3_000, keepaliveMs: 1_000 });
    await agent.disconnect('sb1');
    try {
      await quick.connect('sb1', emulator.socketPath, { deadlineMs: 10_000 });
      await quick.check('sb1');
      // The agent process dies and init starts a new one on the same port, mid host session.
      await guest.stop();
      await emulator.port.close();
      guest = startGuestAgent({
        port: emulator.openPort(),
        protoPath,
        paths: {
          ...defaultGuestPaths(shared),
          stateDir: join(work, 'state'),
          cgroupRoot: join(work, 'cgroup'),
        },
        logger,
        copyRoots: [shared, scratch],
        idlePollMs: 10,
      });
      const deadline = Date.now() + 20_000;
      for (;;) {
        try {
          await quick.check('sb1');
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
        }
      }
      const first = firstValueFrom(quick.events('sb1').pipe(filter((e) => e.type === 'oom')));
      guest.events.publish({ type: 'oom', containerId: 'new-boot' });
      assert.deepEqual(await first, { type: 'oom', containerId: 'new-boot' });
    } finally {
      await quick.close();
    }
    await agent.connect('sb1', emulator.socketPath, { deadlineMs: 10_000 });
  });

  it('times out connecting to a socket where no agent answers', async () => {
    const silent = await SerialEmulator.listen(join(work, 'silent.sock'));
    const lonely = createGrpcAgent({ logger });
    try {
      await assert.rejects(lonely.connect('sb2', silent.socketPath, { deadlineMs: 1_500 }), Timeout);
    } finally {
      await lonely.close();
      await silent.close();
    }
  });
});

describe('output buffer', () => {
  it('keeps the newest bytes within its capacity and counts what it dropped', () => {
    const buffer = new OutputBuffer(10, 0);
    buffer.append(Buffer.from('0123456789'));
    buffer.append(Buffer.from('abcd'));
    assert.equal(buffer.dropped, 4);
    assert.equal(buffer.readFrom(0).offset, 4);
    assert.equal(buffer.readFrom(0).data.toString(), '456789abcd');
    assert.equal(buffer.readFrom(12).data.toString(), 'cd');
    assert.equal(buffer.readFrom(14).data.length, 0);
  });

  it('keeps bytes an attached reader has not read and pauses the source instead of dropping', () => {
    const buffer = new OutputBuffer(10);
    let paused = false;
    buffer.setSource({ pause: () => (paused = true), resume: () => (paused = false) });
    const reader = buffer.attach(0);
    buffer.append(Buffer.from('0123456789'));
    buffer.append(Buffer.from('abcd'));
    assert.equal(buffer.dropped, 0);
    assert.equal(paused, true);
    assert.equal(buffer.read(reader, 2).data.toString(), '01');
    assert.equal(paused, true, 'still more than capacity unread');
    assert.equal(buffer.read(reader, 4).data.toString(), '2345');
    assert.equal(paused, false);
    assert.equal(buffer.dropped, 4, 'bytes the reader passed may go');
    assert.equal(buffer.read(reader).data.toString(), '6789abcd');
    buffer.detach(reader);
    buffer.append(Buffer.from('efgh'));
    assert.equal(buffer.dropped, 8, 'without readers the oldest bytes are dropped');
  });

  it('holds every byte for its first reader (pausing the source), then drops as usual once it came', () => {
    const buffer = new OutputBuffer(10);
    let paused = false;
    buffer.setSource({ pause: () => (paused = true), resume: () => (paused = false) });
    buffer.append(Buffer.from('0123456789'));
    buffer.append(Buffer.from('abcd'));
    assert.equal(buffer.dropped, 0, 'nothing dropped before the first reader');
    assert.equal(paused, true);
    const reader = buffer.attach(0);
    assert.equal(buffer.read(reader).data.toString(), '0123456789abcd');
    assert.equal(paused, false);
    buffer.detach(reader);
    buffer.append(Buffer.from('0123456789ab'));
    assert.equal(buffer.dropped, 16, 'with no reader after the first, the oldest bytes go');
  });

  it('wakes a waiting reader on new bytes and on finish', async () => {
    const buffer = new OutputBuffer(10);
    const waited = buffer.waitForMore(0);
    buffer.append(Buffer.from('x'));
    await waited;
    const ended = buffer.waitForMore(1);
    buffer.finish();
    await ended;
    assert.equal(buffer.finished, true);
  });
});
