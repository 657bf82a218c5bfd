// `events verify` and `stats`: the whole log checked, and counted.
import type { Command } from 'commander';
import type { EventEnvelope } from '../../events/index.js';
import { checkTransitions } from '../../machines/index.js';
import { EXIT } from '../exit-codes.js';
import { printJson, shortTime, table } from '../output.js';
import { type GlobalOptions, readAllPages, withSource } from './source.js';

/** `events verify`. */
export function registerVerify(events: Command, globals: () => GlobalOptions): void {
  events
    .command('verify')
    .description('store integrity (checksums, gaps, indexes) and every transition allowed by the machines')
    .action(async () => {
      const g = globals();
      const progress = (line: string) => {
        if (!g.json) process.stderr.write(`verify: ${line}\n`);
      };
      await withSource(g, async (source) => {
        progress(`checking the store (${source.mode})…`);
        const store = await source.verifyStore();
        progress(
          `store: ${store.events} events, ${store.streams} streams, last seq ${store.lastSeq}, ${store.problems.length} problem(s)`,
        );
        const all: EventEnvelope[] = [];
        let next = 1000;
        for await (const e of readAllPages(source, {})) {
          all.push(e);
          if (all.length >= next) {
            progress(`read ${all.length} events…`);
            next += 1000 * Math.max(1, Math.floor(all.length / 10000));
          }
        }
        progress(`checking ${all.length} events against the machines…`);
        const transitions = checkTransitions(all);
        progress(`transitions: ${all.length} checked, ${transitions.length} refused`);
        const ok = store.ok && transitions.length === 0;
        if (g.json) {
          printJson({
            ok,
            mode: source.mode,
            store,
            transitions: { checked: all.length, problems: transitions },
          });
        } else {
          process.stdout.write(`\n== verify summary (${source.mode}) ==\n`);
          process.stdout.write(
            `events: ${store.events}, streams: ${store.streams}, last seq: ${store.lastSeq}\n`,
          );
          process.stdout.write(`store problems: ${store.problems.length}\n`);
          for (const p of store.problems.slice(0, 50)) {
            process.stdout.write(
              `  ${p.kind} seq=${p.seq ?? '-'} stream=${p.stream ?? '-'} v=${p.version ?? '-'}: ${p.message}\n`,
            );
          }
          process.stdout.write(`transition problems: ${transitions.length}\n`);
          for (const p of transitions.slice(0, 50)) {
            process.stdout.write(
              `  seq=${p.seq} ${p.stream} v${p.version} ${p.type} in state ${p.state}: ${p.message}\n`,
            );
          }
          process.stdout.write(ok ? 'OK\n' : 'FAILED\n');
        }
        if (!ok) process.exitCode = EXIT.CORRUPTION;
      });
    });
}

/** `events stats`. */
export function registerStats(events: Command, globals: () => GlobalOptions): void {
  events
    .command('stats')
    .description('counts by type and stream, sizes, time span')
    .action(async () => {
      const g = globals();
      await withSource(g, async (source) => {
        const byType = new Map<string, { count: number; bytes: number }>();
        const byStream = new Map<string, number>();
        const byKind = new Map<string, number>();
        let total = 0;
        let bytes = 0;
        let first: string | undefined;
        let last: string | undefined;
        for await (const e of readAllPages(source, {})) {
          const size = Buffer.byteLength(JSON.stringify(e));
          total++;
          bytes += size;
          first ??= e.at;
          last = e.at;
          const t = byType.get(e.type) ?? { count: 0, bytes: 0 };
          t.count++;
          t.bytes += size;
          byType.set(e.type, t);
          byStream.set(e.stream, (byStream.get(e.stream) ?? 0) + 1);
          const kind = e.stream.split('-')[0] ?? e.stream;
          byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
        }
        const stats = {
          mode: source.mode,
          events: total,
          bytes,
          streams: byStream.size,
          first,
          last,
          byType: Object.fromEntries([...byType].sort((a, b) => b[1].count - a[1].count)),
          byStreamKind: Object.fromEntries(byKind),
          topStreams: Object.fromEntries([...byStream].sort((a, b) => b[1] - a[1]).slice(0, 10)),
        };
        if (g.json) {
          printJson(stats);
          return;
        }
        process.stdout.write(
          `${total} events, ${byStream.size} streams, ${bytes} bytes as JSON (${source.mode}); ${shortTime(first)} … ${shortTime(last)}\n`,
        );
        process.stdout.write(
          `${table(
            ['TYPE', 'COUNT', 'BYTES', 'AVG'],
            [...byType]
              .sort((a, b) => b[1].count - a[1].count)
              .map(([t, s]) => [t, s.count, s.bytes, Math.round(s.bytes / s.count)]),
          )}\n`,
        );
        process.stdout.write(`${table(['STREAM KIND', 'EVENTS'], [...byKind])}\n`);
        process.stdout.write(`${table(['TOP STREAM', 'EVENTS'], Object.entries(stats.topStreams))}\n`);
      });
    });
}
