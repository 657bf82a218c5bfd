// State tags (src/machines/tags.ts): each state is classified where it is declared, and the classes hold together.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EntityKind } from '../src/events/index.js';
import { effectNames, machines, type StateTag, stateHasTag, statesTagged } from '../src/machines/index.js';

interface Node {
  readonly entry: readonly (string | { type: string })[];
  readonly states: Readonly<Record<string, Node>>;
}
const kinds: readonly EntityKind[] = ['sandbox', 'container', 'exec'];
const topStates = (kind: EntityKind) =>
  Object.entries((machines[kind].root as unknown as Node).states) as [string, Node][];

function startsEffect(kind: EntityKind, node: Node): boolean {
  return (
    node.entry.some((a) => effectNames[kind].has(typeof a === 'string' ? a : a.type)) ||
    Object.values(node.states).some((n) => startsEffect(kind, n))
  );
}

describe('state tags', () => {
  it('tags a state transitional exactly when entering it starts an effect', () => {
    for (const kind of kinds)
      for (const [name, node] of topStates(kind))
        assert.equal(stateHasTag(kind, name, 'transitional'), startsEffect(kind, node), `${kind}.${name}`);
  });

  it('keeps opposite classes apart', () => {
    const apart: [EntityKind, StateTag, StateTag][] = [
      ['sandbox', 'vmUp', 'down'],
      ['container', 'live', 'ended'],
      ['exec', 'live', 'ended'],
    ];
    for (const [kind, a, b] of apart)
      for (const s of statesTagged(kind, a))
        assert.ok(!stateHasTag(kind, s, b), `${kind}.${s}: ${a} and ${b}`);
  });

  it('tags a sandbox state startable exactly when it takes SandboxStartRequested', () => {
    for (const [name, node] of topStates('sandbox')) {
      const on = (node as unknown as { config: { on?: Record<string, unknown> } }).config.on ?? {};
      assert.equal(
        stateHasTag('sandbox', name, 'startable'),
        'SandboxStartRequested' in on,
        `sandbox.${name}`,
      );
    }
  });

  it('classifies the states commands and supervision ask about', () => {
    const sorted = (kind: EntityKind, tag: StateTag) => [...statesTagged(kind, tag)].sort();
    assert.deepEqual(sorted('sandbox', 'vmUp'), [
      'paused',
      'pausing',
      'resuming',
      'running',
      'starting',
      'stopping',
    ]);
    assert.deepEqual(sorted('sandbox', 'down'), ['deleting', 'failed', 'lost', 'stopped']);
    assert.deepEqual(sorted('sandbox', 'frozen'), ['paused', 'pausing', 'resuming']);
    assert.deepEqual(sorted('sandbox', 'startable'), ['created', 'failed', 'lost', 'stopped']);
    assert.deepEqual(sorted('sandbox', 'serving'), ['running']);
    assert.deepEqual(sorted('container', 'live'), ['paused', 'pausing', 'resuming', 'running', 'starting']);
    assert.deepEqual(sorted('container', 'ended'), ['deleted', 'deleting', 'failed', 'stopped']);
    assert.deepEqual(sorted('exec', 'ended'), ['exited', 'failed']);
    // Neither the state before the first event nor a final state is anything but itself.
    for (const kind of kinds) {
      for (const tag of ['vmUp', 'down', 'live', 'ended', 'transitional'] as const)
        assert.ok(!stateHasTag(kind, 'absent', tag), `${kind}.absent is not ${tag}`);
    }
  });
});
