// Shared shapes of the lifecycle machines: the event a machine consumes and the failure it keeps.
import type { FailureData } from '../events/index.js';

/** A catalogue event as a machine consumes it: `at` (the append time) when it came from the log. */
export type Fed<E> = E & { readonly at?: string };

/** The last failure an entity saw, kept in context so views can show it. */
export type LastFailure = FailureData;

/** The state name a view shows: the top-level state of a (possibly nested) state value. */
export function topState(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') return Object.keys(value)[0] ?? 'unknown';
  return 'unknown';
}

/** Output the guest dropped unread, per stream: bytes in all, and the stream offset the last drop ended at. */
export type OutputDrops = Readonly<Partial<Record<'stdout' | 'stderr', { bytes: number; upTo: number }>>>;

/** The drops after one more (`OutputDropped` data). */
export function addDrop(
  drops: OutputDrops | undefined,
  d: { stream: 'stdout' | 'stderr'; bytes: number; offset: number },
): OutputDrops {
  const before = drops?.[d.stream];
  return { ...drops, [d.stream]: { bytes: (before?.bytes ?? 0) + d.bytes, upTo: d.offset + d.bytes } };
}
