// What sandboxd-runc keeps under --root: one directory per container with a record the daemon cannot give
// (the keeper's host pid, which sandbox holds the container, whether this CLI made that sandbox). Written
// durably (temp file, fsync, rename, fsync of the directory) so a crash leaves the old record or the new one.
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

export interface ContainerRecord {
  readonly id: string;
  readonly sandboxId: string;
  /** sandboxd-runc created the sandbox for this container (and deletes it with the container). */
  readonly ownsSandbox: boolean;
  readonly bundle: string;
  readonly rootfs: string;
  readonly ociVersion: string;
  readonly created: string;
  readonly keeperPid?: number;
  /** The host cgroup directories of the spec's cgroupsPath (one per hierarchy), made by create. */
  readonly hostCgroup?: readonly string[];
}

const recordPath = (root: string, id: string) => join(root, id, 'state.json');

/** Writes `data` to `path` so that a crash leaves either the old file or the whole new one. */
export async function writeDurably(path: string, data: string, mode = 0o600): Promise<void> {
  const dir = join(path, '..');
  const temp = `${path}.${process.pid}.tmp`;
  const f = await open(temp, 'w', mode);
  try {
    await f.writeFile(data);
    await f.sync();
  } finally {
    await f.close();
  }
  await rename(temp, path);
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

export async function writeRecord(root: string, record: ContainerRecord): Promise<void> {
  await mkdir(join(root, record.id), { recursive: true, mode: 0o700 });
  await writeDurably(recordPath(root, record.id), `${JSON.stringify(record)}\n`);
}

export async function readRecord(root: string, id: string): Promise<ContainerRecord | undefined> {
  try {
    return JSON.parse(await readFile(recordPath(root, id), 'utf8')) as ContainerRecord;
  } catch {
    return undefined;
  }
}

export async function removeRecord(root: string, id: string): Promise<void> {
  await rm(join(root, id), { recursive: true, force: true });
}

/** Ids of the containers recorded under `root`. */
export async function recordedIds(root: string): Promise<string[]> {
  const names = await readdir(root).catch(() => [] as string[]);
  const ids: string[] = [];
  for (const n of names) if (await readRecord(root, n)) ids.push(n);
  return ids.sort();
}

/**
 * Where a container created with a non-default --root or socket lives, kept under the default root: podman 4.3
 * runs `delete` with neither its runtime flags nor its environment, so the id alone must lead there.
 */
export interface Pointer {
  readonly root: string;
  readonly socket: string;
}

const pointerPath = (defaultRoot: string, id: string) => join(defaultRoot, '.index', id);

export async function writePointer(defaultRoot: string, id: string, p: Pointer): Promise<void> {
  await mkdir(join(defaultRoot, '.index'), { recursive: true, mode: 0o700 });
  await writeDurably(pointerPath(defaultRoot, id), `${JSON.stringify(p)}\n`);
}

export async function readPointer(defaultRoot: string, id: string): Promise<Pointer | undefined> {
  try {
    return JSON.parse(await readFile(pointerPath(defaultRoot, id), 'utf8')) as Pointer;
  } catch {
    return undefined;
  }
}

export async function removePointer(defaultRoot: string, id: string): Promise<void> {
  await rm(pointerPath(defaultRoot, id), { force: true });
}
