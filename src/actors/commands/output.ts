// What the host log keeper reports about a process's output: bytes the guest dropped while nobody read.
import type { OutputDrops } from '../../machines/index.js';
import type { Kernel } from '../kernel.js';
import type { OutputDropReport } from '../types.js';

/**
 * Records ContainerOutputDropped / ProcessOutputDropped, once: a daemon that crashed after recording it and before the
 * log's marker finds the same gap again, and the entity's context says it is known. False when nothing was recorded
 * (already known, or the entity no longer takes it).
 */
export async function recordOutputDropped(k: Kernel, r: OutputDropReport): Promise<boolean> {
  const entity =
    r.execId === '' ? k.container(r.sandboxId, r.containerId) : k.exec(r.sandboxId, r.containerId, r.execId);
  return entity.exclusive(async () => {
    const drops = (entity.context as { outputDropped?: OutputDrops }).outputDropped;
    if ((drops?.[r.stream]?.upTo ?? 0) >= r.offset + r.bytes) return false;
    const type = r.execId === '' ? 'ContainerOutputDropped' : 'ProcessOutputDropped';
    const data = { stream: r.stream, bytes: r.bytes, offset: r.offset };
    return (await k.recordInTurn(entity, { type, data }, {})) !== undefined;
  });
}
