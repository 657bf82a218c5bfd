// `events ls`, `streams`, `tail` and `export`: the log as it is.
import { createWriteStream } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import {
  containerEventTypes,
  type EventEnvelope,
  entityOfEventType,
  execEventTypes,
  sandboxEventTypes,
} from '../../events/index.js';
import { printJson, shortTime, table } from '../output.js';
import { eventRows, summarise } from './fold.js';
import { parseSince } from './parse.js';
import { type GlobalOptions, openSource, type Query, readAllPages, withSource } from './source.js';

// A misspelt type would match nothing and look like an empty log: refuse it, naming the known ones.
const collectType = (v: string, prev: string[] = []) => {
  if (entityOfEventType(v) === undefined) {
    const known = [...sandboxEventTypes, ...containerEventTypes, ...execEventTypes].join(', ');
    throw new InvalidArgumentError(`unknown event type; known types: ${known}`);
  }
  return [...prev, v];
};

/** `events ls`. */
export function registerLs(events: Command, globals: () => GlobalOptions): void {
  events
    .command('ls')
    .description('list events (filters: --stream, --type, --from-seq, --since)')
    .option('--stream <stream>', 'only this stream (e.g. sandbox-web1)')
    .option('--type <type>', 'only this event type (repeatable)', collectType)
    .option('--from-seq <n>', 'from this global seq on', (v) => Number(v))
    .option('--since <time>', 'at or after this ISO time, or a duration back (5m, 2h)')
    .option('--limit <n>', 'at most this many events', (v) => Number(v))
    .action(
      async (o: { stream?: string; type?: string[]; fromSeq?: number; since?: string; limit?: number }) => {
        const g = globals();
        await withSource(g, async (source) => {
          const query: Query = {
            ...(o.stream ? { stream: o.stream } : {}),
            ...(o.type ? { types: o.type } : {}),
            ...(o.fromSeq ? { fromSeq: o.fromSeq } : {}),
            ...(o.since ? { since: parseSince(o.since) } : {}),
          };
          const out: EventEnvelope[] = [];
          for await (const e of readAllPages(source, query)) {
            out.push(e);
            if (o.limit !== undefined && out.length >= o.limit) break;
          }
          if (g.json) printJson(out);
          else {
            process.stdout.write(`${table(['SEQ', 'AT', 'STREAM', 'V', 'TYPE', 'DATA'], eventRows(out))}\n`);
            process.stdout.write(`${out.length} event(s) (${source.mode})\n`);
          }
        });
      },
    );
}

/** `events streams`. */
export function registerStreams(events: Command, globals: () => GlobalOptions): void {
  events
    .command('streams')
    .description('streams with their versions')
    .option('--prefix <prefix>', 'only streams starting with this (sandbox-, container-, exec-)')
    .action(async (o: { prefix?: string }) => {
      const g = globals();
      await withSource(g, async (source) => {
        const streams = await source.streams(o.prefix);
        if (g.json) printJson(streams);
        else
          process.stdout.write(
            `${table(
              ['STREAM', 'VERSION'],
              streams.map((s) => [s.stream, s.version]),
            )}\n`,
          );
      });
    });
}

/** `events tail`. */
export function registerTail(events: Command, globals: () => GlobalOptions): void {
  events
    .command('tail')
    .description('the last events; -f follows new ones as they become durable')
    .option('-n, --lines <n>', 'how many of the last events', (v) => Number(v), 10)
    .option('-f, --follow', 'keep following (Ctrl-C to stop)')
    .option('--stream <stream>', 'only this stream')
    .action(async (o: { lines: number; follow?: boolean; stream?: string }) => {
      const g = globals();
      const source = await openSource(g);
      try {
        const head = await source.read({ limit: 1, fromSeq: 1 });
        const lastSeq = head.lastSeq;
        const from = Math.max(1, lastSeq - (o.stream ? lastSeq : o.lines) + 1);
        const recent: EventEnvelope[] = [];
        for await (const e of readAllPages(source, {
          fromSeq: from,
          ...(o.stream ? { stream: o.stream } : {}),
        })) {
          recent.push(e);
        }
        const print = (e: EventEnvelope) => {
          if (o.stream && e.stream !== o.stream) return;
          if (g.json) process.stdout.write(`${JSON.stringify(e)}\n`);
          else
            process.stdout.write(
              `${e.seq}\t${shortTime(e.at)}\t${e.stream}\tv${e.version}\t${e.type}\t${summarise(e.data)}\n`,
            );
        };
        for (const e of recent.slice(-o.lines)) print(e);
        if (o.follow) {
          const stop = () => void source.close();
          process.once('SIGINT', stop);
          await source.follow(lastSeq + 1, print);
          process.off('SIGINT', stop);
        }
      } finally {
        await source.close().catch(() => undefined);
      }
    });
}

/** `events export`. */
export function registerExport(events: Command, globals: () => GlobalOptions): void {
  events
    .command('export')
    .description('every event as JSON Lines (stdout, or --output FILE)')
    .option('--output <file>', 'write here instead of stdout')
    .option('--stream <stream>', 'only this stream')
    .option('--from-seq <n>', 'from this seq on', (v) => Number(v))
    .action(async (o: { output?: string; stream?: string; fromSeq?: number }) => {
      const g = globals();
      await withSource(g, async (source) => {
        const out: NodeJS.WritableStream = o.output ? createWriteStream(o.output) : process.stdout;
        let n = 0;
        for await (const e of readAllPages(source, {
          ...(o.stream ? { stream: o.stream } : {}),
          ...(o.fromSeq ? { fromSeq: o.fromSeq } : {}),
        })) {
          if (!out.write(`${JSON.stringify(e)}\n`))
            await new Promise<void>((r) => out.once('drain', () => r()));
          n++;
        }
        if (o.output) {
          await new Promise<void>((resolve) => out.end(() => resolve()));
          process.stderr.write(`export: ${n} events → ${o.output}\n`);
        }
      });
    });
}
