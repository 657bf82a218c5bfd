// Which entity a `sandboxctl events explain` argument names, and which streams are its lives.
import { InvalidArgument } from '../errors/index.js';
import type { EntityKind, EventEnvelope } from '../events/index.js';

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** `ID`, `ID/CONTAINER` or `ID/CONTAINER/EXEC`. */
export interface EntityRef {
  readonly kind: EntityKind;
  readonly sandboxId: string;
  readonly containerId?: string;
  readonly execId?: string;
}

/** Parses an entity reference; throws InvalidArgument('entity') naming the bad part. */
export function parseEntityRef(text: string): EntityRef {
  const parts = text.split('/');
  if (parts.length > 3)
    throw new InvalidArgument(
      'entity',
      `${JSON.stringify(text)}: expected ID, ID/CONTAINER or ID/CONTAINER/EXEC`,
    );
  const names = ['sandbox id', 'container id', 'exec id'];
  parts.forEach((p, i) => {
    if (!ID.test(p))
      throw new InvalidArgument('entity', `${names[i]} ${JSON.stringify(p)} must match ${ID.source}`);
  });
  const [sandboxId, containerId, execId] = parts as [string, string?, string?];
  if (execId !== undefined) return { kind: 'exec', sandboxId, containerId: containerId!, execId };
  if (containerId !== undefined) return { kind: 'container', sandboxId, containerId };
  return { kind: 'sandbox', sandboxId };
}

export const formatEntityRef = (ref: EntityRef): string =>
  [ref.sandboxId, ref.containerId, ref.execId].filter((p) => p !== undefined).join('/');

const literal = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const life = '(?:~\\d+)?';

/** The stream-name prefix every life of `ref` starts with (for listStreams). */
export function streamPrefixOf(ref: EntityRef): string {
  return `${ref.kind}-${ref.sandboxId}`;
}

/** Whether `stream` is a life of `ref` by its name (ids holding `-` can make names ambiguous: see ownsStream). */
export function namesLifeOf(ref: EntityRef, stream: string): boolean {
  const parts = [ref.sandboxId, ref.containerId, ref.execId].filter((p) => p !== undefined) as string[];
  const pattern = new RegExp(`^${ref.kind}-${parts.map((p) => `${literal(p)}${life}`).join('-')}$`);
  return pattern.test(stream);
}

/** Whether a stream's first event (its create) is `ref`'s: settles names ambiguous because of `-` in ids. */
export function ownsStream(ref: EntityRef, first: EventEnvelope | undefined): boolean {
  if (!first) return false;
  const data = (first.data ?? {}) as { sandboxId?: unknown; containerId?: unknown; execId?: unknown };
  if (data.sandboxId !== undefined && data.sandboxId !== ref.sandboxId) return false;
  if (ref.kind !== 'sandbox' && data.containerId !== undefined && data.containerId !== ref.containerId)
    return false;
  if (ref.kind === 'exec' && data.execId !== undefined && data.execId !== ref.execId) return false;
  return true;
}
