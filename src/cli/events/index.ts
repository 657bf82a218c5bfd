// `sandboxctl events …`: list, show, replay (time travel), verify, tail, export, stats, explain and stuck, online or offline.
import type { Command } from 'commander';
import { registerExplain, registerStuck } from './explain.js';
import { registerReplay, registerShow } from './inspect.js';
import { registerExport, registerLs, registerStreams, registerTail } from './list.js';
import type { GlobalOptions } from './source.js';
import { registerStats, registerVerify } from './verify.js';

export { parseDuration, parseSince, parseUntil } from './parse.js';
export type { GlobalOptions } from './source.js';

/** Registers `events …` under `program`; `globals()` gives the global options at action time. */
export function registerEventCommands(program: Command, globals: () => GlobalOptions): void {
  const events = program
    .command('events')
    .description(
      'the event log: ls, show, replay, verify, tail, export, stats, explain, stuck (online, or offline with --state-dir)',
    );
  registerLs(events, globals);
  registerStreams(events, globals);
  registerShow(events, globals);
  registerReplay(events, globals);
  registerVerify(events, globals);
  registerTail(events, globals);
  registerExport(events, globals);
  registerStats(events, globals);
  registerExplain(events, globals);
  registerStuck(events, globals);
}
