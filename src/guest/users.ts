// "uid", "uid:gid", "name" or "name:group" → numeric ids from the container's /etc/passwd and /etc/group (Kata's cmdToKataProcess).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgument } from '../errors/index.js';

interface Entry {
  readonly name: string;
  readonly id: number;
  readonly gid: number;
}

async function readDb(rootfs: string, file: 'passwd' | 'group'): Promise<Entry[]> {
  const text = await readFile(join(rootfs, 'etc', file), 'utf8').catch(() => '');
  return text
    .split('\n')
    .map((line) => line.split(':'))
    .filter((fields) => fields.length >= 3 && /^\d+$/.test(fields[2] ?? ''))
    .map((fields) => ({ name: fields[0]!, id: Number(fields[2]), gid: Number(fields[3] ?? fields[2]) }));
}

/** Resolves a user spec against the container's rootfs; a name that is not there is InvalidArgument. */
export async function resolveUser(rootfs: string, spec: string): Promise<{ uid: number; gid: number }> {
  const [userPart = '', groupPart] = spec.split(':');
  if (userPart === '') throw new InvalidArgument('process.user', 'empty user');
  const passwd = await readDb(rootfs, 'passwd');
  let uid: number;
  let gid: number;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    gid = passwd.find((entry) => entry.id === uid)?.gid ?? 0;
  } else {
    const entry = passwd.find((candidate) => candidate.name === userPart);
    if (!entry)
      throw new InvalidArgument('process.user', `no user ${JSON.stringify(userPart)} in the container`);
    uid = entry.id;
    gid = entry.gid;
  }
  if (groupPart !== undefined && groupPart !== '') {
    if (/^\d+$/.test(groupPart)) {
      gid = Number(groupPart);
    } else {
      const group = (await readDb(rootfs, 'group')).find((entry) => entry.name === groupPart);
      if (!group)
        throw new InvalidArgument('process.user', `no group ${JSON.stringify(groupPart)} in the container`);
      gid = group.id;
    }
  }
  return { uid, gid };
}
