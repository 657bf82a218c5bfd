// CPU and memory-node lists in the kernel's cpuset syntax ("0-3,6"), as OCI's linux.resources.cpu.cpus/mems and
// CRI's CpusetCpus/CpusetMems carry them: parsed, normalised and joined. Pure.
import { InvalidArgument } from '../errors/index.js';

/** The largest id taken: far above any real host, low enough that a typo cannot allocate a huge array. */
const MAX_ID = 8191;

/** The ids of `text` ("0-3,6" → [0, 1, 2, 3, 6]), sorted and unique; InvalidArgument naming `field` otherwise. */
export function parseCpuList(text: string, field: string): number[] {
  const ids = new Set<number>();
  const trimmed = text.trim();
  if (trimmed === '') throw new InvalidArgument(field, 'must name at least one id (e.g. "0-3,6")');
  for (const part of trimmed.split(',')) {
    const m = /^\s*(\d+)(?:\s*-\s*(\d+))?\s*$/.exec(part);
    if (!m) throw new InvalidArgument(field, `${JSON.stringify(part)} is not an id or a range like 0-3`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from) throw new InvalidArgument(field, `range ${part.trim()} runs backwards`);
    if (to > MAX_ID) throw new InvalidArgument(field, `id ${to} is above ${MAX_ID}`);
    for (let id = from; id <= to; id++) ids.add(id);
  }
  return [...ids].sort((a, b) => a - b);
}

/** Ids as the kernel writes them: [0, 1, 2, 3, 6] → "0-3,6". */
export function formatCpuList(ids: Iterable<number>): string {
  const sorted = [...new Set(ids)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** `text` normalised ("3,0-2" → "0-3"); InvalidArgument naming `field` when it is not a list. */
export function checkCpuList(text: string, field: string): string {
  return formatCpuList(parseCpuList(text, field));
}

/** The union of lists (each already checked): what a sandbox of several pinned containers is pinned to. */
export function unionCpuLists(lists: Iterable<string>): string {
  const ids: number[] = [];
  for (const list of lists) ids.push(...parseCpuList(list, 'cpus'));
  return formatCpuList(ids);
}
