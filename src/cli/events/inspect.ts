// `events show` and `replay`: a stream event by event, and an entity's state at a point in its history.
import type { Command } from 'commander';
import { SandboxdError } from '../../errors/index.js';
import { printJson, shortTime, table } from '../output.js';
import { foldEach, summarise } from './fold.js';
import { parseUntil } from './parse.js';
import { type GlobalOptions, streamEvents, withSource } from './source.js';

/** `events show`. */
export function registerShow(events: Command, globals: () => GlobalOptions): void {
  events
    .command('show <stream>')
    .description('each event of a stream with the state after it')
    .action(async (stream: string) => {
      const g = globals();
      await withSource(g, async (source) => {
        const steps = foldEach(await streamEvents(source, stream));
        if (g.json) {
          printJson(
            steps.map((s) => ({
              event: s.event,
              state: s.after.state,
              context: s.after.context,
              refused: s.refused,
            })),
          );
          return;
        }
        const rows = steps.map((s) => [
          s.event.seq,
          s.event.version,
          shortTime(s.event.at),
          s.event.type,
          s.refused ? `${s.after.state} (REFUSED: ${s.refused})` : s.after.state,
          summarise(s.event.data),
        ]);
        process.stdout.write(`${table(['SEQ', 'V', 'AT', 'TYPE', 'STATE AFTER', 'DATA'], rows)}\n`);
      });
    });
}

/** `events replay`. */
export function registerReplay(events: Command, globals: () => GlobalOptions): void {
  events
    .command('replay <stream>')
    .description("the entity's full state at a point in its history (time travel)")
    .option('--until <point>', 'SEQ | seq:N | version:N | vN | ISO time (default: the end)')
    .action(async (stream: string, o: { until?: string }) => {
      const g = globals();
      const until = o.until ? parseUntil(o.until) : undefined;
      await withSource(g, async (source) => {
        const all = await streamEvents(source, stream);
        const upto = all.filter((e) => {
          if (!until) return true;
          if ('seq' in until) return e.seq <= until.seq;
          if ('version' in until) return e.version <= until.version;
          return Date.parse(e.at) <= until.time;
        });
        if (upto.length === 0) {
          throw new SandboxdError('NotFound', 'NOT_FOUND', `stream ${stream} has no events up to ${o.until}`);
        }
        const steps = foldEach(upto);
        const last = steps[steps.length - 1]!;
        const refused = steps.filter((s) => s.refused);
        const result = {
          stream,
          until: o.until ?? 'end',
          version: last.event.version,
          seq: last.event.seq,
          at: last.event.at,
          lastEvent: last.event.type,
          events: upto.length,
          ofEvents: all.length,
          state: last.after.state,
          context: last.after.context,
          refused: refused.map((s) => ({ seq: s.event.seq, type: s.event.type, reason: s.refused })),
        };
        if (g.json) {
          printJson(result);
          return;
        }
        for (const s of steps) {
          process.stdout.write(
            `replay: v${s.event.version} seq ${s.event.seq} ${s.event.type} → ${s.after.state}${s.refused ? ` (REFUSED: ${s.refused})` : ''}\n`,
          );
        }
        process.stdout.write(
          `\n${stream} at version ${result.version} (seq ${result.seq}, ${shortTime(result.at)}), ${result.events} of ${result.ofEvents} events:\n`,
        );
        process.stdout.write(
          `state: ${result.state}\ncontext:\n${JSON.stringify(result.context, null, 2)}\n`,
        );
        if (refused.length > 0) process.stdout.write(`${refused.length} event(s) refused by the machine\n`);
      });
    });
}
