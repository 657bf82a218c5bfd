// SandboxResizeRequested / SandboxResized in the sandbox machine, stepped without running anything: only a running VM grows, the size is kept, a new VM forgets it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { initialTransition, transition } from 'xstate';
import { eventRegistry } from '../src/events/index.js';
import {
  can,
  persistSnapshot,
  restoreSnapshot,
  type SandboxMachineEvent,
  sandboxMachine,
  step,
} from '../src/machines/index.js';
import { bootEvents, foldSandbox, vmHandle as handle } from './support/sandbox-events.js';

const boot = bootEvents({ vcpus: 1, maxVcpus: 2 });
const fold = foldSandbox;

const resized = (vcpus: number, memoryMiB: number): SandboxMachineEvent => ({
  type: 'SandboxResized',
  data: { vcpus, memoryMiB },
});

describe('sandbox machine: SandboxResized', () => {
  it('is accepted while running, keeps the new totals in context and names no effect', () => {
    const running = fold(boot).snapshot;
    assert.equal(can('sandbox', running, resized(2, 640)), true);
    const { snapshot, effects } = step('sandbox', running, resized(2, 640));
    assert.equal(snapshot.value, 'running');
    assert.deepEqual(snapshot.context.size, { vcpus: 2, memoryMiB: 640 });
    assert.deepEqual(effects, []);
  });

  it('gives the same result through xstate.transition, with no action to run', () => {
    let s = initialTransition(sandboxMachine)[0];
    for (const e of boot) s = transition(sandboxMachine, s, e)[0];
    const [next, actions] = transition(sandboxMachine, s, resized(2, 640));
    assert.deepEqual(next.context.size, { vcpus: 2, memoryMiB: 640 });
    assert.deepEqual(
      actions.map((a) => a.type),
      [],
    );
  });

  it('is refused before the VM runs, while it pauses, is paused, resumes, stops, and after', () => {
    const prefixes: SandboxMachineEvent[][] = [
      boot.slice(0, 1),
      boot.slice(0, 3),
      [...boot, { type: 'SandboxPauseRequested', data: {} }],
      [...boot, { type: 'SandboxPauseRequested', data: {} }, { type: 'SandboxPaused', data: {} }],
      [
        ...boot,
        { type: 'SandboxPauseRequested', data: {} },
        { type: 'SandboxPaused', data: {} },
        { type: 'SandboxResumeRequested', data: {} },
      ],
      [...boot, { type: 'SandboxStopRequested', data: {} }],
      [...boot, { type: 'SandboxStopRequested', data: {} }, { type: 'SandboxStopped', data: {} }],
      [...boot, { type: 'VmExited', data: { reason: 'gone' } }],
    ];
    for (const events of prefixes) {
      const s = fold(events).snapshot;
      assert.equal(can('sandbox', s, resized(2, 640)), false, JSON.stringify(s.value));
    }
  });

  it('keeps the size across pause and resume, and forgets it when a new VM is launched', () => {
    const grown = [...boot, resized(2, 640)];
    const paused = fold([
      ...grown,
      { type: 'SandboxPauseRequested', data: {} },
      { type: 'SandboxPaused', data: {} },
      { type: 'SandboxResumeRequested', data: {} },
      { type: 'SandboxResumed', data: {} },
    ]).snapshot;
    assert.deepEqual(paused.context.size, { vcpus: 2, memoryMiB: 640 });
    const relaunched = fold([
      ...grown,
      { type: 'SandboxStopRequested', data: {} },
      { type: 'SandboxStopped', data: {} },
      { type: 'SandboxStartRequested', data: {} },
      { type: 'VmLaunched', data: { handle: { ...handle, pid: 11 } } },
    ]).snapshot;
    assert.equal(relaunched.context.size, undefined);
    assert.equal(relaunched.context.handle?.pid, 11);
  });

  it('leaves the context of a log without resizes as it was (no size key appears)', () => {
    const s = fold([
      ...boot,
      { type: 'SandboxStopRequested', data: {} },
      { type: 'SandboxStopped', data: {} },
      { type: 'SandboxStartRequested', data: {} },
      { type: 'VmLaunched', data: { handle } },
    ]).snapshot;
    assert.equal(Object.hasOwn(s.context, 'size'), false);
  });

  it('persists and restores the size', () => {
    const s = fold([...boot, resized(2, 768)]).snapshot;
    const persisted = persistSnapshot('sandbox', s);
    const restored = restoreSnapshot('sandbox', JSON.parse(JSON.stringify(persisted)));
    assert.deepEqual(persistSnapshot('sandbox', restored), persisted);
    assert.deepEqual(restored.context.size, { vcpus: 2, memoryMiB: 768 });
  });
});

describe('sandbox machine: SandboxResizeRequested', () => {
  const asked: SandboxMachineEvent = { type: 'SandboxResizeRequested', data: { vcpus: 2, memoryMiB: 640 } };
  const failed: SandboxMachineEvent = {
    type: 'SandboxResizeFailed',
    data: { error: { step: 'resizeVm', kind: 'HypervisorError', message: 'device_add failed' } },
  };

  it('names resizeVm while running, keeps the request open until its outcome, one at a time', () => {
    const running = fold(boot).snapshot;
    const { snapshot, effects } = step('sandbox', running, asked);
    assert.deepEqual(effects, ['resizeVm']);
    assert.deepEqual(snapshot.context.resizing, { vcpus: 2, memoryMiB: 640 });
    assert.equal(can('sandbox', snapshot, asked), false, 'a second resize waits for the first');
    const done = step('sandbox', snapshot, resized(2, 640)).snapshot;
    assert.equal(done.context.resizing, undefined);
    assert.deepEqual(done.context.size, { vcpus: 2, memoryMiB: 640 });
    const refused = step('sandbox', snapshot, failed).snapshot;
    assert.deepEqual(
      [refused.value, refused.context.resizing, refused.context.error],
      ['running', undefined, undefined],
    );
  });

  it('is refused unless running; a new VM forgets an open request', () => {
    const paused = fold([
      ...boot,
      { type: 'SandboxPauseRequested', data: {} },
      { type: 'SandboxPaused', data: {} },
    ]);
    assert.equal(can('sandbox', paused.snapshot, asked), false);
    const open = step('sandbox', fold(boot).snapshot, asked).snapshot;
    let s = step('sandbox', open, { type: 'VmExited', data: { reason: 'gone' } }).snapshot;
    s = step('sandbox', s, { type: 'SandboxStartRequested', data: {} }).snapshot;
    s = step('sandbox', s, { type: 'VmLaunched', data: { handle } }).snapshot;
    assert.equal(s.context.resizing, undefined);
  });
});

describe('event catalogue: SandboxResized', () => {
  it('validates the totals and names the bad field', () => {
    assert.deepEqual(eventRegistry.validate('SandboxResized', { vcpus: 2, memoryMiB: 640 }), {
      vcpus: 2,
      memoryMiB: 640,
    });
    assert.throws(() => eventRegistry.validate('SandboxResized', { vcpus: 0, memoryMiB: 640 }), {
      kind: 'InvalidArgument',
      field: 'data.vcpus',
    });
    assert.throws(() => eventRegistry.validate('SandboxResized', { vcpus: 2 }), {
      kind: 'InvalidArgument',
      field: 'data.memoryMiB',
    });
  });
});
