// Where the agent relay puts its socket (the sandbox's VM state dir, nothing under the temp dir) and that connect
// retries leave no listener on the caller's abort signal.
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { AgentRelay, createGrpcAgent, relaySocketPath } from '../src/agent/index.js';
import { Timeout } from '../src/errors/index.js';
import { exists } from './support/vm.js';

const logger = pino({ level: 'silent' });

async function sbxAgentDirs(): Promise<string[]> {
  return (await readdir(tmpdir())).filter(
    (name) => name.startsWith('sbx-agent-') && !name.startsWith('sbx-agent-relay-'),
  );
}

describe('agent relay socket', () => {
  let work: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'sbx-agent-relay-'));
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('listens beside the agent socket in the VM state dir and removes its socket on close', async () => {
    const vmDir = join(work, 'vm1');
    await mkdir(vmDir);
    const agentSocket = join(vmDir, 'agent.sock');
    const tempBefore = await sbxAgentDirs();
    const relay = await AgentRelay.open({ agentSocket, logger });
    assert.equal(relay.socketPath, join(vmDir, 'relay-agent.sock'));
    assert.equal(relay.target, `unix:${join(vmDir, 'relay-agent.sock')}`);
    assert.ok((await stat(relay.socketPath)).isSocket());
    assert.deepEqual(await sbxAgentDirs(), tempBefore);
    await relay.close();
    assert.equal(await exists(relay.socketPath), false);
  });

  it('replaces a stale relay socket left by a daemon killed with -9', async () => {
    const vmDir = join(work, 'vm2');
    await mkdir(vmDir);
    const agentSocket = join(vmDir, 'agent.sock');
    await writeFile(relaySocketPath(agentSocket), 'stale');
    const relay = await AgentRelay.open({ agentSocket, logger });
    assert.ok((await stat(relay.socketPath)).isSocket());
    await relay.close();
    assert.deepEqual(await readdir(vmDir), []);
  });

  it('falls back to a private temp dir when the state dir path is too long for a unix socket, and removes it', async () => {
    const deep = join(work, 'd'.repeat(50), 'e'.repeat(50));
    await mkdir(deep, { recursive: true });
    const agentSocket = join(deep, 'agent.sock');
    assert.ok(Buffer.byteLength(relaySocketPath(agentSocket)) > 107);
    const relay = await AgentRelay.open({ agentSocket, logger });
    assert.ok(Buffer.byteLength(relay.socketPath) <= 107);
    assert.ok(relay.socketPath.startsWith(join(tmpdir(), 'sbx-agent-')));
    const dir = join(relay.socketPath, '..');
    assert.ok(await exists(dir));
    await relay.close();
    assert.equal(await exists(dir), false);
  });
});

describe('agent connect retries', { timeout: 30_000 }, () => {
  let work: string;
  let refuser: Server;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'sbx-agent-retry-'));
    // A "VM" whose agent port hangs up at once: every Check fails fast and connect keeps retrying.
    refuser = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => refuser.listen(join(work, 'agent.sock'), resolve));
  });

  after(async () => {
    await new Promise<void>((resolve) => refuser.close(() => resolve()));
    await rm(work, { recursive: true, force: true });
  });

  it('leaves no abort listener on the caller signal after many retries', async () => {
    const agent = createGrpcAgent({ logger, callDeadlineMs: 1_000 });
    const controller = new AbortController();
    try {
      await assert.rejects(
        agent.connect('sb', join(work, 'agent.sock'), { deadlineMs: 3_000, signal: controller.signal }),
        Timeout,
      );
      assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
    } finally {
      await agent.close();
    }
    assert.equal(await exists(join(work, 'relay-agent.sock')), false);
  });
});
