// Reads only an entity's own streams (every life of it) from a log and explains them.
import { NotFound } from '../errors/index.js';
import type { EventEnvelope } from '../events/index.js';
import { type EntityRef, formatEntityRef, namesLifeOf, ownsStream, streamPrefixOf } from './ref.js';
import { type Explanation, explainEntity } from './timeline.js';

/** What explain needs of a log: the store itself offline, the daemon's events.streams / events.read online. */
export interface StreamReader {
  listStreams(prefix?: string): Promise<readonly { readonly stream: string }[]>;
  readStream(stream: string): AsyncIterable<EventEnvelope>;
}

/** Every life of `ref`, read stream by stream (nothing else of the log is read). Throws NotFound without one. */
export async function readEntity(log: StreamReader, ref: EntityRef): Promise<Map<string, EventEnvelope[]>> {
  const streams = (await log.listStreams(streamPrefixOf(ref))).map((s) => s.stream);
  const lives = new Map<string, EventEnvelope[]>();
  for (const stream of streams.filter((s) => namesLifeOf(ref, s))) {
    const events: EventEnvelope[] = [];
    for await (const e of log.readStream(stream)) events.push(e);
    if (ownsStream(ref, events[0])) lives.set(stream, events);
  }
  if (lives.size === 0) throw notFound(ref);
  return lives;
}

/** Reads and explains `ref` (see readEntity, explainEntity). */
export async function explainFromLog(log: StreamReader, ref: EntityRef): Promise<Explanation> {
  return explainEntity(formatEntityRef(ref), await readEntity(log, ref));
}

function notFound(ref: EntityRef): NotFound {
  if (ref.kind === 'sandbox') return new NotFound('sandbox', ref.sandboxId);
  if (ref.kind === 'container')
    return new NotFound('container', ref.containerId!, { sandboxId: ref.sandboxId });
  return new NotFound('exec', ref.execId!, { sandboxId: ref.sandboxId, containerId: ref.containerId });
}
