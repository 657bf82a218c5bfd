// A reproducible newc (SVR4) cpio writer: the initrd needs a /dev/console node, which `cpio -o` could only copy from a mknod'ed file.

/** One archive member. Paths are relative, without a leading slash ("bin/sh"). */
export type CpioEntry =
  | { readonly kind: 'dir'; readonly path: string; readonly mode?: number }
  | { readonly kind: 'file'; readonly path: string; readonly data: Uint8Array; readonly mode?: number }
  | { readonly kind: 'symlink'; readonly path: string; readonly target: string }
  | {
      readonly kind: 'chardev';
      readonly path: string;
      readonly major: number;
      readonly minor: number;
      readonly mode?: number;
    };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function hex8(value: number): string {
  return value.toString(16).padStart(8, '0');
}

function pad4(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function header(fields: {
  ino: number;
  mode: number;
  nlink: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
  nameSize: number;
}): string {
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
  return [
    '070701',
    hex8(fields.ino),
    hex8(fields.mode),
    hex8(0),
    hex8(0),
    hex8(fields.nlink),
    hex8(0),
    hex8(fields.size),
    hex8(0),
    hex8(0),
    hex8(fields.rdevMajor),
    hex8(fields.rdevMinor),
    hex8(fields.nameSize),
    hex8(0),
  ].join('');
}

/**
 * Serialises entries as a newc archive with uid/gid 0 and mtime 0, so equal inputs give equal bytes.
 * Parents must come before their children (the kernel creates members in order).
 */
export function writeCpio(entries: readonly CpioEntry[]): Buffer {
  const chunks: Buffer[] = [];
  let offset = 0;
  const push = (chunk: Buffer): void => {
    chunks.push(chunk);
    offset += chunk.length;
  };
  const member = (
    ino: number,
    name: string,
    mode: number,
    nlink: number,
    data: Buffer,
    rdev = [0, 0],
  ): void => {
    const nameBytes = Buffer.from(`${name}\0`, 'utf8');
    const head = Buffer.from(
      header({
        ino,
        mode,
        nlink,
        size: data.length,
        rdevMajor: rdev[0] ?? 0,
        rdevMinor: rdev[1] ?? 0,
        nameSize: nameBytes.length,
      }),
      'ascii',
    );
    push(head);
    push(nameBytes);
    push(pad4(offset));
    if (data.length > 0) {
      push(data);
      push(pad4(offset));
    }
  };
  let ino = 1;
  for (const entry of entries) {
    const path = entry.path.replace(/^\/+/, '');
    switch (entry.kind) {
      case 'dir':
        member(ino++, path, S_IFDIR | (entry.mode ?? 0o755), 2, Buffer.alloc(0));
        break;
      case 'file':
        member(ino++, path, S_IFREG | (entry.mode ?? 0o644), 1, Buffer.from(entry.data));
        break;
      case 'symlink':
        member(ino++, path, S_IFLNK | 0o777, 1, Buffer.from(entry.target, 'utf8'));
        break;
      case 'chardev':
        member(ino++, path, S_IFCHR | (entry.mode ?? 0o600), 1, Buffer.alloc(0), [entry.major, entry.minor]);
        break;
    }
  }
  member(0, 'TRAILER!!!', 0, 1, Buffer.alloc(0));
  return Buffer.concat(chunks);
}
