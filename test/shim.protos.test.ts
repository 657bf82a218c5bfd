// containerd's protos loaded in place, and an event forwarded over our ttrpc client to a real containerd
// (Debian's 1.6, in a temp dir): `ctr events`, started first, prints it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decode, encode, messageType, packAny, protos, TASK_SERVICE, unpackAny } from '../src/shim/protos.js';
import { EventPublisher, forward } from '../src/shim/publish.js';
import { Code, TtrpcClient } from '../src/ttrpc/index.js';
import { type Containerd, startContainerd, until } from './support/containerd.js';

describe('containerd protos', () => {
  it('load the Task service with its 17 calls and the messages the shim needs', () => {
    const svc = protos().lookupService(TASK_SERVICE);
    assert.deepEqual(Object.keys(svc.methods).sort(), [
      'Checkpoint',
      'CloseIO',
      'Connect',
      'Create',
      'Delete',
      'Exec',
      'Kill',
      'Pause',
      'Pids',
      'ResizePty',
      'Resume',
      'Shutdown',
      'Start',
      'State',
      'Stats',
      'Update',
      'Wait',
    ]);
    assert.equal(svc.methods.Create?.resolvedRequestType?.fullName, '.containerd.task.v2.CreateTaskRequest');
    assert.deepEqual(Object.keys(messageType('io.containerd.cgroups.v2.Metrics').fields).slice(0, 3), [
      'pids',
      'cpu',
      'memory',
    ]);
  });

  it('encode with containerd field numbers: TaskExit bytes as Go marshals them', () => {
    const bytes = encode('containerd.events.TaskExit', {
      containerId: 't1',
      id: 't1',
      pid: 7,
      exitStatus: 3,
    });
    // 0a 02 "t1" | 12 02 "t1" | 18 07 | 20 03
    assert.equal(Buffer.from(bytes).toString('hex'), '0a027431120274311807' + '2003');
    assert.equal(decode<{ exitStatus: number }>('containerd.events.TaskExit', bytes).exitStatus, 3);
    const any = packAny('containerd.events.TaskExit', { containerId: 'x' });
    assert.equal(any.type_url, 'containerd.events.TaskExit');
    const envelope = encode('containerd.services.events.ttrpc.v1.Envelope', {
      topic: '/tasks/exit',
      event: any,
    });
    // The Any inside the envelope carries its type URL (field 1) before its value (field 2).
    assert.ok(Buffer.from(envelope).includes(Buffer.from('\x0a\x1acontainerd.events.TaskExit', 'latin1')));
    assert.equal(unpackAny<{ containerId: string }>(any).value.containerId, 'x');
    assert.throws(() => encode('containerd.events.TaskExit', { exitStatus: 'three' }), /exitStatus/);
  });
});

describe('events forwarded to a real containerd', () => {
  let ctrd: Containerd;
  before(async () => {
    ctrd = await startContainerd();
  });
  after(async () => {
    await ctrd?.stop();
  });

  it('containerd takes a TaskExit from Events/Forward and ctr events prints it', async () => {
    const events = ctrd.ctrSpawn(['events']);
    try {
      // ctr events is listening once it prints an event made after it started: create namespaces until one shows.
      let n = 0;
      await until('ctr events to subscribe', async () => {
        const r = await ctrd.ctr(['namespaces', 'create', `probe${n++}`]);
        assert.equal(r.code, 0, r.stderr);
        return events.stdout().includes('/namespaces/create') ? true : undefined;
      });
      const client = await TtrpcClient.connect(ctrd.ttrpcAddress);
      await forward(client, {
        type: 'containerd.events.TaskExit',
        namespace: 'default',
        value: {
          containerId: 'c-forwarded',
          id: 'c-forwarded',
          pid: 4242,
          exitStatus: 3,
          exitedAt: { seconds: 1, nanos: 0 },
        },
      });
      const line = await until('the TaskExit in ctr events', () =>
        events
          .stdout()
          .split('\n')
          .find((l) => l.includes('/tasks/exit')),
      );
      assert.match(line, / default \/tasks\/exit /);
      assert.match(line, /"container_id":"c-forwarded"/);
      assert.match(line, /"exit_status":3/);
      assert.match(line, /"pid":4242/);

      // An event containerd refuses (a bad namespace) comes back as its gRPC status, not silence.
      await assert.rejects(
        forward(client, {
          type: 'containerd.events.TaskStart',
          namespace: 'bad namespace!',
          value: { containerId: 'x' },
        }),
        (e: { code: number }) => e.code !== Code.OK,
      );
      client.close();

      // The publisher keeps order across several events.
      const pub = new EventPublisher(ctrd.ttrpcAddress);
      for (const type of [
        'containerd.events.TaskCreate',
        'containerd.events.TaskStart',
        'containerd.events.TaskDelete',
      ] as const) {
        pub.publish({ type, namespace: 'default', value: { containerId: 'ordered' } });
      }
      await pub.close();
      const topics = await until('three ordered events', () => {
        const t = events
          .stdout()
          .split('\n')
          .filter((l) => l.includes('"container_id":"ordered"'))
          .map((l) => l.split(' ').find((w) => w.startsWith('/tasks/')));
        return t.length === 3 ? t : undefined;
      });
      assert.deepEqual(topics, ['/tasks/create', '/tasks/start', '/tasks/delete']);
    } finally {
      events.child.kill('SIGTERM');
    }
  });
});
