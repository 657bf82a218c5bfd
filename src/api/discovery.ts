// Where a state dir's daemon listens: the daemon records its socket in the state dir once it serves, so a
// client given only --state-dir finds that daemon, and a second daemon is refused before touching anything.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileDurably } from '../store/index.js';
import { socketIsLive } from './socket.js';

/** The file in the state dir naming the serving daemon (written durably, 0600 like the dir). */
export const DAEMON_RECORD = 'daemon.json';

export interface DaemonRecord {
  readonly pid: number;
  readonly socket: string;
  readonly startedAt: string;
  readonly version: string;
}

export function recordDaemon(stateDir: string, record: DaemonRecord): Promise<void> {
  return writeFileDurably(join(stateDir, DAEMON_RECORD), `${JSON.stringify(record)}\n`, 0o600);
}

export async function forgetDaemon(stateDir: string): Promise<void> {
  await rm(join(stateDir, DAEMON_RECORD), { force: true });
}

/** The record of the daemon that serves `stateDir` now, if one does (a record left by a dead daemon: none). */
export async function liveDaemonOf(stateDir: string): Promise<DaemonRecord | undefined> {
  let record: DaemonRecord;
  try {
    record = JSON.parse(await readFile(join(stateDir, DAEMON_RECORD), 'utf8')) as DaemonRecord;
  } catch {
    return undefined;
  }
  if (typeof record.socket !== 'string') return undefined;
  return (await socketIsLive(record.socket)) ? record : undefined;
}
