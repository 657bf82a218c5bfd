// The cross-entity rules (src/actors/commands/decide.ts): one pure table of which tag each involved entity's
// state must carry, refusing with InvalidState naming the entity that lacks it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { COMMAND_RULES, decide, type Involved } from '../src/actors/commands/decide.js';
import { InvalidState } from '../src/errors/index.js';
import { type StateTag, stateHasTag, statesTagged } from '../src/machines/index.js';

const at = (kind: 'sandbox' | 'container' | 'exec', id: string, state: string): Involved => ({
  id,
  state,
  is: (tag: StateTag) => stateHasTag(kind, state, tag),
});

describe('decide: rules that span entities', () => {
  it('names only tags that some state of that kind carries', () => {
    for (const [command, rules] of Object.entries(COMMAND_RULES))
      for (const [role, tag] of rules)
        assert.ok(statesTagged(role, tag).size > 0, `${command}: ${role} ${tag}`);
  });

  it('serves commands only from a running sandbox, container or exec', () => {
    assert.deepEqual([...statesTagged('sandbox', 'serving')], ['running']);
    assert.deepEqual([...statesTagged('container', 'serving')], ['running']);
    assert.deepEqual([...statesTagged('exec', 'serving')], ['running']);
  });

  it('lets a command through when every involved entity carries its tag', () => {
    decide('exec.start', {
      sandbox: at('sandbox', 's1', 'running'),
      container: at('container', 'c1', 'running'),
    });
    decide('container.kill', {
      sandbox: at('sandbox', 's1', 'running'),
      container: at('container', 'c1', 'paused'),
    });
  });

  it('refuses with InvalidState naming the first entity that lacks its tag, as the command is shown', () => {
    const refused = (fn: () => void, entity: string, id: string, state: string, command: string) =>
      assert.throws(fn, (err: unknown) => {
        assert.ok(err instanceof InvalidState);
        assert.deepEqual(err.details, { entity, id, state, command });
        return true;
      });
    refused(
      () =>
        decide('exec.start', {
          sandbox: at('sandbox', 's1', 'paused'),
          container: at('container', 'c1', 'running'),
        }),
      'sandbox',
      's1',
      'paused',
      'exec.start',
    );
    refused(
      () =>
        decide('exec.start', {
          sandbox: at('sandbox', 's1', 'running'),
          container: at('container', 'c1', 'paused'),
        }),
      'container',
      'c1',
      'paused',
      'exec.start',
    );
    refused(
      () =>
        decide(
          'container.kill',
          { sandbox: at('sandbox', 's1', 'running'), container: at('container', 'c1', 'created') },
          'kill SIGTERM',
        ),
      'container',
      'c1',
      'created',
      'kill SIGTERM',
    );
  });
});
