// The rules that span entities, in one pure table (a decider's "command + the states it touches → go on, or a
// typed refusal"): which state tag each entity a command involves must carry. A new state is classified by its
// tags where the machine declares it (src/machines/tags.ts), so no rule here can silently miss it.
import { InvalidState } from '../../errors/index.js';
import type { StateTag } from '../../machines/index.js';

type Role = 'sandbox' | 'container' | 'exec';
type Rule = readonly [Role, StateTag];

const guestAnswers: Rule = ['sandbox', 'serving'];

/** Per command: the entities it involves and the tag each must carry, checked in this order. */
export const COMMAND_RULES = {
  'container.create': [guestAnswers],
  'container.start': [guestAnswers],
  'container.kill': [guestAnswers, ['container', 'live']],
  'container.pause': [guestAnswers],
  'container.resume': [guestAnswers],
  'container.stats': [guestAnswers],
  'container.update': [guestAnswers],
  'container.ps': [guestAnswers],
  'exec.start': [guestAnswers, ['container', 'serving']],
  'exec.kill': [guestAnswers, ['exec', 'serving']],
  'exec.resize': [guestAnswers],
  'exec.stdin': [guestAnswers],
  'sandbox.update': [guestAnswers],
  'sandbox.networkRefresh': [guestAnswers],
  'sandbox.stats': [guestAnswers],
  guest: [guestAnswers],
} as const satisfies Record<string, readonly Rule[]>;

export type RuledCommand = keyof typeof COMMAND_RULES;

/** What decide needs of an entity: its id, its state's name and its tags. */
export interface Involved {
  readonly id: string;
  readonly state: string;
  is(tag: StateTag): boolean;
}

/**
 * Refuses `command` with InvalidState naming the first involved entity whose state lacks its rule's tag (`shown`
 * is the command as the error names it, e.g. `kill SIGTERM`). Pure: it reads states, changes nothing.
 */
export function decide(
  command: RuledCommand,
  involved: Partial<Record<Role, Involved>>,
  shown: string = command,
): void {
  for (const [role, tag] of COMMAND_RULES[command] as readonly Rule[]) {
    const entity = involved[role];
    if (!entity) throw new TypeError(`${command}: no ${role} given to decide on`);
    if (!entity.is(tag)) throw new InvalidState(role, entity.id, entity.state, shown);
  }
}
