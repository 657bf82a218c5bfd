// `events explain` (an entity's life: transitions, intent/outcome pairs, durations, who asked, why it ended)
// and `events stuck` (intents without an outcome past their deadline), online or offline.
import type { Command } from 'commander';
import {
  deadlinesFrom,
  type Explanation,
  explainFromLog,
  type Life,
  type Operation,
  parseEntityRef,
  type StuckIntent,
  watchLog,
} from '../../explain/index.js';
import { printJson, table, truncate } from '../output.js';
import { parseDuration } from './parse.js';
import { type EventSource, type GlobalOptions, readAllPages, streamReader, withSource } from './source.js';

const ms = (n: number | undefined): string => (n === undefined ? '' : `${n} ms`);

function stepsText(op: Operation): string {
  return op.steps.map((s) => `${s.name} ${s.ms} ms`).join(', ');
}

function operationRows(life: Life): unknown[][] {
  return life.operations.map((op) => [
    op.seq,
    op.intent,
    `${op.from} → ${op.to ?? `(${op.current?.state ?? '?'})`}`,
    op.by,
    op.settled === 'open' ? `open since ${op.current?.since ?? op.at}` : ms(op.totalMs),
    truncate(stepsText(op), 70),
    op.settled === 'effect' ? op.endedBy : `${op.settled}${op.endedBy ? ` (${op.endedBy})` : ''}`,
  ]);
}

function timelineRows(life: Life): unknown[][] {
  return life.timeline.map((e) => [
    e.seq,
    `+${e.offsetMs} ms`,
    e.type,
    e.from === e.to ? e.to : `${e.from} → ${e.to}`,
    e.by,
    e.causeSeq === undefined ? '' : `${e.tookMs} ms after ${e.causeSeq}`,
    truncate(e.world ?? (e.refused ? 'REFUSED by the machine' : ''), 60),
  ]);
}

function render(x: Explanation): string {
  const out: string[] = [`${x.kind} ${x.ref}: ${x.state}${x.ended ? ` — ${x.ended}` : ''}`];
  for (const life of x.lives) {
    out.push(
      '',
      `life ${life.incarnation} (${life.stream}), ${life.startedAt} … ${life.lastAt}: ${life.state}${life.ended ? ` — ${life.ended}` : ''}`,
    );
    if (life.operations.length > 0) {
      out.push(
        table(['SEQ', 'INTENT', 'TRANSITION', 'ASKED BY', 'TOOK', 'STEPS', 'OUTCOME'], operationRows(life)),
      );
    }
    out.push(table(['SEQ', 'AT', 'EVENT', 'STATE', 'BY', 'OUTCOME OF', 'WORLD SAID'], timelineRows(life)));
  }
  return out.join('\n');
}

/** `events explain ID | ID/CONTAINER | ID/CONTAINER/EXEC`. */
export function registerExplain(events: Command, globals: () => GlobalOptions): void {
  events
    .command('explain <entity>')
    .description(
      "an entity's whole life (ID, ID/CONTAINER or ID/CONTAINER/EXEC): transitions, who asked, how long each step took, what the world said, why it ended",
    )
    .action(async (entity: string) => {
      const g = globals();
      const ref = parseEntityRef(entity);
      await withSource(g, async (source) => {
        const x = await explainFromLog(streamReader(source), ref);
        if (g.json) printJson(x);
        else process.stdout.write(`${render(x)}\n`);
      });
    });
}

async function stuckOf(source: EventSource, olderThanMs: number | undefined): Promise<StuckIntent[]> {
  if (source.mode === 'online') return source.stuck(olderThanMs);
  // Offline nobody kept a watch: fold the whole log; the deadlines are the runtime's defaults.
  const { defaultTimeouts } = await import('../../actors/index.js');
  const watch = await watchLog(readAllPages(source, {}), { deadline: deadlinesFrom(defaultTimeouts) });
  return watch.stuck(Date.now(), olderThanMs);
}

/** `events stuck [--older-than 30s]`. */
export function registerStuck(events: Command, globals: () => GlobalOptions): void {
  events
    .command('stuck')
    .description(
      'intents without an outcome past their deadline (the effect timeouts), or older than --older-than',
    )
    .option('--older-than <duration>', 'waiting longer than this in their step (250ms, 30s, 5m) instead')
    .action(async (o: { olderThan?: string }) => {
      const g = globals();
      const olderThanMs = o.olderThan === undefined ? undefined : parseDuration(o.olderThan, 'older-than');
      await withSource(g, async (source) => {
        const stuck = await stuckOf(source, olderThanMs);
        if (g.json) {
          printJson(stuck);
          return;
        }
        if (stuck.length === 0) {
          process.stdout.write(`nothing stuck (${source.mode})\n`);
          return;
        }
        const rows = stuck.map((s) => [
          s.stream,
          `${s.seq} ${s.intent}`,
          s.step,
          s.effect ?? '',
          `${Math.round(s.waitedMs / 1000)} s`,
          `${Math.round(s.deadlineMs / 1000)} s`,
          s.by,
        ]);
        process.stdout.write(
          `${table(['STREAM', 'INTENT', 'STEP', 'EFFECT', 'WAITING', 'DEADLINE', 'ASKED BY'], rows)}\n`,
        );
        process.stdout.write(`${stuck.length} stuck (${source.mode})\n`);
      });
    });
}
