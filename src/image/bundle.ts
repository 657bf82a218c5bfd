// OCI bundles with a busybox-static rootfs: the test, demo and sandboxctl container, no registry needed.
import { chmod, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgument } from '../errors/index.js';
import { runChecked } from './exec.js';
import { busyboxPath } from './hostfiles.js';

export interface BusyboxBundleOptions {
  /** Command of the container's init process; default ['sh']. */
  readonly args?: readonly string[];
  /** Extra environment ("KEY=value"); a PATH here replaces the default one. */
  readonly env?: readonly string[];
  /** Working directory inside the container; default '/'. */
  readonly cwd?: string;
  /** Whether the process gets a terminal (crun then needs --console-socket). Default false. */
  readonly terminal?: boolean;
  /** cgroup v2 memory.max of the container. */
  readonly memoryLimitBytes?: number;
  /** linux.cgroupsPath, e.g. "/sandboxd/<id>" (the guest's container cgroup parent). Default: crun's choice. */
  readonly cgroupsPath?: string;
  /** Container hostname; default 'busybox'. */
  readonly hostname?: string;
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const CAPABILITIES = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];

/** The config.json of a busybox bundle (OCI runtime-spec 1.0, shaped for crun 1.8 on cgroup v2). */
export function busyboxBundleConfig(options: BusyboxBundleOptions = {}): Record<string, unknown> {
  const args = options.args && options.args.length > 0 ? [...options.args] : ['sh'];
  const extraEnv = options.env ?? [];
  const env = [
    ...(extraEnv.some((entry) => entry.startsWith('PATH=')) ? [] : [DEFAULT_PATH]),
    'TERM=xterm',
    'HOME=/root',
    ...extraEnv,
  ];
  const cwd = options.cwd ?? '/';
  if (!cwd.startsWith('/')) throw new InvalidArgument('cwd', 'must be an absolute path');
  if (options.memoryLimitBytes !== undefined && !(options.memoryLimitBytes > 0)) {
    throw new InvalidArgument('memoryLimitBytes', 'must be a positive number of bytes');
  }
  const resources: Record<string, unknown> = { devices: [{ allow: false, access: 'rwm' }] };
  if (options.memoryLimitBytes !== undefined) {
    resources.memory = { limit: Math.floor(options.memoryLimitBytes) };
  }
  const linux: Record<string, unknown> = {
    resources,
    namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }],
    maskedPaths: [
      '/proc/acpi',
      '/proc/asound',
      '/proc/kcore',
      '/proc/keys',
      '/proc/latency_stats',
      '/proc/timer_list',
      '/proc/timer_stats',
      '/proc/sched_debug',
      '/proc/scsi',
      '/sys/firmware',
    ],
    readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
  };
  if (options.cgroupsPath !== undefined) linux.cgroupsPath = options.cgroupsPath;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: options.terminal ?? false,
      user: { uid: 0, gid: 0 },
      args,
      env,
      cwd,
      capabilities: {
        bounding: CAPABILITIES,
        effective: CAPABILITIES,
        permitted: CAPABILITIES,
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: false },
    hostname: options.hostname ?? 'busybox',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
      },
      {
        destination: '/dev/shm',
        type: 'tmpfs',
        source: 'shm',
        options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
      },
      {
        destination: '/dev/mqueue',
        type: 'mqueue',
        source: 'mqueue',
        options: ['nosuid', 'noexec', 'nodev'],
      },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      {
        destination: '/sys/fs/cgroup',
        type: 'cgroup',
        source: 'cgroup',
        options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
      },
    ],
    linux,
  };
}

let appletNames: Promise<string[]> | undefined;

function busyboxAppletNames(): Promise<string[]> {
  appletNames ??= runChecked('image: busybox --list', busyboxPath(), ['--list']).then((out) =>
    out
      .split('\n')
      .map((name) => name.trim())
      .filter((name) => name.length > 0 && name !== 'busybox' && !name.includes('/')),
  );
  return appletNames;
}

async function symlinkIfAbsent(target: string, path: string): Promise<void> {
  try {
    await symlink(target, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
}

/**
 * Writes an OCI bundle into `dir` (created if needed): config.json and rootfs/ with busybox-static and its
 * applet links in /bin. Idempotent: config.json is rewritten, the rootfs completed. Throws InvalidArgument
 * for bad options.
 */
export async function createBusyboxBundle(dir: string, options: BusyboxBundleOptions = {}): Promise<void> {
  const config = busyboxBundleConfig(options);
  const rootfs = join(dir, 'rootfs');
  for (const sub of [
    'bin',
    'sbin',
    'usr/bin',
    'dev',
    'proc',
    'sys',
    'etc',
    'root',
    'tmp',
    'var/tmp',
    'run',
  ]) {
    await mkdir(join(rootfs, sub), { recursive: true });
  }
  await chmod(join(rootfs, 'tmp'), 0o1777);
  await chmod(join(rootfs, 'var/tmp'), 0o1777);
  await copyFile(busyboxPath(), join(rootfs, 'bin/busybox'));
  await chmod(join(rootfs, 'bin/busybox'), 0o755);
  for (const name of await busyboxAppletNames()) await symlinkIfAbsent('busybox', join(rootfs, 'bin', name));
  await writeFile(
    join(rootfs, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n',
  );
  await writeFile(join(rootfs, 'etc/group'), 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n');
  await writeFile(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
}
