// kill -9 durability: every append the child acknowledged is present, intact and in order after a reopen.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import type { EventEnvelope } from '../src/events/index.js';
import { openLevelEventStore } from '../src/store/index.js';
import { testRegistry } from './fixtures/store-registry.js';

interface Ack {
  stream: string;
  version: number;
  firstSeq: number;
  lastSeq: number;
  ids: string[];
  ns: number[];
}

const appender = new URL('./fixtures/store-appender.js', import.meta.url);
let dir = '';
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs the appender, kills it with SIGKILL `killAfterMs` after it is ready, returns the acks it printed. */
async function runAndKill(killAfterMs: number): Promise<{ acks: Ack[]; startSeq: number }> {
  const child = spawn(process.execPath, [appender.pathname, dir, '48'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_code, signal) => resolve(signal)),
  );
  const acks: Ack[] = [];
  let startSeq = -1;
  let timer: NodeJS.Timeout | undefined;
  const lines = createInterface({ input: child.stdout });
  const closed = new Promise((resolve) => lines.once('close', resolve));
  lines.on('line', (line) => {
    const message = JSON.parse(line) as Ack & { ready?: boolean; lastSeq: number };
    if (message.ready) {
      startSeq = message.lastSeq;
      timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    } else {
      acks.push(message);
    }
  });
  const watchdog = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const signal = await exited;
  clearTimeout(watchdog);
  if (timer) clearTimeout(timer);
  // Lines already in the pipe were acknowledged before the kill: read them all.
  await closed;
  assert.equal(signal, 'SIGKILL', 'the appender must die by SIGKILL, not exit on its own');
  return { acks, startSeq };
}

describe('kill -9 durability', () => {
  it('keeps every acknowledged append, intact and in order, across several kill -9 rounds', async () => {
    dir = await mkdtemp(join(tmpdir(), 'sandboxd-store-durability-'));
    const allAcks: Ack[] = [];
    let previousLastSeq = 0;
    for (let round = 0; round < 4; round++) {
      const { acks, startSeq } = await runAndKill(150 + Math.floor(Math.random() * 900));
      assert.ok(
        startSeq >= previousLastSeq,
        `round ${round}: reopened log lost events (${startSeq} < ${previousLastSeq})`,
      );
      assert.ok(acks.length > 0, `round ${round}: the appender acknowledged nothing before the kill`);
      allAcks.push(...acks);

      const store = await openLevelEventStore(dir, { registry: testRegistry() });
      try {
        const bySeq = new Map<number, EventEnvelope>();
        let expectedSeq = 1;
        for await (const event of store.readAll()) {
          assert.equal(event.seq, expectedSeq, 'readAll is gap-free and in seq order');
          expectedSeq++;
          bySeq.set(event.seq, event);
        }
        for (const ack of allAcks) {
          ack.ids.forEach((id, i) => {
            const event = bySeq.get(ack.firstSeq + i);
            assert.ok(event, `acknowledged seq ${ack.firstSeq + i} is missing`);
            assert.equal(event.id, id);
            assert.equal(event.stream, ack.stream);
            assert.equal(event.version, ack.version - ack.ids.length + 1 + i);
            assert.deepEqual(event.data, { n: ack.ns[i], note: `${ack.stream}:${ack.ns[i]}` });
          });
        }
        // Per-stream reads agree with the global log.
        for (const { stream, version } of await store.listStreams('durable-')) {
          let v = 0;
          for await (const event of store.readStream(stream)) {
            assert.equal(event.version, ++v);
            assert.equal(bySeq.get(event.seq)?.id, event.id);
          }
          assert.equal(v, version);
        }
        const report = await store.verify();
        assert.deepEqual(report.problems, []);
        assert.equal(report.lastSeq, store.lastSeq());
        previousLastSeq = store.lastSeq();
        assert.ok(previousLastSeq >= Math.max(...acks.map((a) => a.lastSeq)));
      } finally {
        await store.close();
      }
    }
  });
});
