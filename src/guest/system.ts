// Guest-wide operations: details, clock, entropy, CPU/memory onlining, file copy into the sandbox dirs, network, metrics.
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, realpath, rename, writeFile } from 'node:fs/promises';
import { cpus, networkInterfaces, release } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import type { WireNetInterface, WireNetRoute, WireStorage } from '../agent/index.js';
import { Internal, InvalidArgument, NotFound } from '../errors/index.js';

function run(step: string, file: string, args: readonly string[]): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(file, [...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Internal(step, `${stderr}`.trim() || err.message, { args }));
      else resolvePromise(stdout);
    });
  });
}

const SYSFS_CPU = '/sys/devices/system/cpu';
const SYSFS_MEMORY = '/sys/devices/system/memory';

export async function guestDetails(agentVersion: string) {
  const meminfo = await readFile('/proc/meminfo', 'utf8').catch(() => '');
  const memTotalKiB = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
  const blockHex = (await readFile(join(SYSFS_MEMORY, 'block_size_bytes'), 'utf8').catch(() => '0')).trim();
  return {
    agentVersion,
    kernel: release(),
    memBlockSizeBytes: Number.parseInt(blockHex, 16) || 0,
    cpus: cpus().length,
    memTotalBytes: memTotalKiB * 1024,
  };
}

/** Sets the clock with busybox `date` (Node has no settimeofday). */
export async function setDateTime(sec: number): Promise<void> {
  if (!Number.isFinite(sec) || sec <= 0) throw new InvalidArgument('sec', 'must be a positive epoch second');
  await run('date -s', 'date', ['-u', '-s', `@${Math.floor(sec)}`]);
}

/** Mixes the seed into the kernel pool (writes to /dev/urandom credit no entropy but do stir it). */
export async function reseedRandom(data: Buffer): Promise<void> {
  if (data.length === 0) throw new InvalidArgument('data', 'empty seed');
  await writeFile('/dev/urandom', data);
}

/** Onlines offline CPUs until `want` are online (0 = all) and, if asked, every offline memory block. */
export async function onlineCpuMem(
  want: number,
  memory: boolean,
): Promise<{ cpusOnline: number; memoryBlocksOnlined: number }> {
  const cpuDirs = (await readdir(SYSFS_CPU).catch(() => [] as string[])).filter((name) =>
    /^cpu\d+$/.test(name),
  );
  let online = 0;
  const offline: string[] = [];
  for (const name of cpuDirs.sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)))) {
    const state = await readFile(join(SYSFS_CPU, name, 'online'), 'utf8').catch(() => '1');
    if (state.trim() === '1') online++;
    else offline.push(name);
  }
  for (const name of offline) {
    if (want > 0 && online >= want) break;
    await writeFile(join(SYSFS_CPU, name, 'online'), '1');
    online++;
  }
  let memoryBlocksOnlined = 0;
  if (memory) {
    const blocks = (await readdir(SYSFS_MEMORY).catch(() => [] as string[])).filter((name) =>
      /^memory\d+$/.test(name),
    );
    for (const block of blocks) {
      const state = (await readFile(join(SYSFS_MEMORY, block, 'state'), 'utf8').catch(() => '')).trim();
      if (state !== 'offline') continue;
      await writeFile(join(SYSFS_MEMORY, block, 'state'), 'online');
      memoryBlocksOnlined++;
    }
  }
  return { cpusOnline: online, memoryBlocksOnlined };
}

export async function memHotplugByProbe(addresses: readonly number[]): Promise<void> {
  for (const address of addresses) {
    await writeFile(join(SYSFS_MEMORY, 'probe'), `0x${address.toString(16)}`);
  }
}

function within(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : `${root}${sep}`);
}

/**
 * Writes `data` at `path` (temp file + rename), which must lie inside one of `roots`: absolute, no `..` segment,
 * and its real parent directory (symlinks resolved) inside the real root. Anything else is InvalidArgument.
 */
export async function copyFile(
  roots: readonly string[],
  path: string,
  data: Buffer,
  mode: number,
): Promise<void> {
  if (!isAbsolute(path)) throw new InvalidArgument('path', 'must be absolute');
  if (path.split('/').includes('..')) throw new InvalidArgument('path', 'path traversal ("..") is refused');
  const target = resolve(path);
  const root = roots.find((candidate) => within(resolve(candidate), target) && resolve(candidate) !== target);
  if (!root) throw new InvalidArgument('path', `must be inside ${roots.join(' or ')}`);
  const parent = dirname(target);
  await mkdir(parent, { recursive: true });
  const [realRoot, realParent] = await Promise.all([realpath(root), realpath(parent)]);
  if (!within(realRoot, realParent))
    throw new InvalidArgument('path', 'escapes the sandbox dirs through a symlink');
  const temp = join(realParent, `.sandboxd-copy-${process.pid}-${Date.now()}`);
  await writeFile(temp, data, { mode: mode || 0o644 });
  await rename(temp, join(realParent, basename(target)));
}

/** Whether something is mounted at `path` (field 5 of /proc/self/mountinfo; paths there escape spaces as \040). */
async function isMountPoint(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const target = resolve(path).replaceAll(' ', '\\040');
  return info.split('\n').some((line) => line.split(' ')[4] === target);
}

/** CreateSandbox's guest side: hostname, resolv.conf, extra mounts. */
export async function setupSandbox(
  hostname: string,
  dns: readonly string[],
  storages: readonly WireStorage[],
) {
  if (hostname !== '') {
    if (!/^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/.test(hostname))
      throw new InvalidArgument('hostname', 'not a hostname');
    await writeFile('/proc/sys/kernel/hostname', hostname);
    await writeFile('/etc/hostname', `${hostname}\n`).catch(() => {});
  }
  if (dns.length > 0) {
    const lines = dns.map((entry) => (entry.includes(' ') ? entry : `nameserver ${entry}`));
    await writeFile('/etc/resolv.conf', `${lines.join('\n')}\n`);
  }
  for (const [index, storage] of storages.entries()) {
    if (!isAbsolute(storage.mountPoint)) {
      throw new InvalidArgument(`storages.${index}.mountPoint`, 'must be absolute');
    }
    // A retried CreateSandbox (or a cold boot's share, mounted by init) finds it mounted: mount once.
    if (await isMountPoint(storage.mountPoint)) continue;
    await mkdir(storage.mountPoint, { recursive: true });
    const args = ['-t', storage.fstype || 'tmpfs'];
    if (storage.options.length > 0) args.push('-o', storage.options.join(','));
    args.push(storage.source || 'none', storage.mountPoint);
    await run('mount', 'mount', args);
  }
}

export async function listInterfaces(): Promise<WireNetInterface[]> {
  const names = await readdir('/sys/class/net').catch(() => [] as string[]);
  const addresses = networkInterfaces();
  const result: WireNetInterface[] = [];
  for (const name of names.sort()) {
    const read = (file: string) =>
      readFile(join('/sys/class/net', name, file), 'utf8').then(
        (t) => t.trim(),
        () => '',
      );
    const [mac, mtu, flags] = await Promise.all([read('address'), read('mtu'), read('flags')]);
    result.push({
      name,
      mac,
      mtu: Number(mtu) || 0,
      addresses: (addresses[name] ?? []).map((info) => info.cidr ?? info.address),
      up: (Number.parseInt(flags || '0', 16) & 1) === 1,
    });
  }
  return result;
}

export async function updateInterface(iface: WireNetInterface | null): Promise<WireNetInterface> {
  if (!iface || iface.name === '') throw new InvalidArgument('interface.name', 'required');
  const known = await listInterfaces();
  if (!known.some((candidate) => candidate.name === iface.name)) throw new NotFound('interface', iface.name);
  if (iface.mtu > 0)
    await run('ip link mtu', 'ip', ['link', 'set', 'dev', iface.name, 'mtu', String(iface.mtu)]);
  if (iface.mac !== '')
    await run('ip link address', 'ip', ['link', 'set', 'dev', iface.name, 'address', iface.mac]);
  if (iface.addresses.length > 0) {
    await run('ip addr flush', 'ip', ['addr', 'flush', 'dev', iface.name]);
    for (const address of iface.addresses)
      await run('ip addr add', 'ip', ['addr', 'add', address, 'dev', iface.name]);
  }
  await run('ip link up/down', 'ip', ['link', 'set', 'dev', iface.name, iface.up ? 'up' : 'down']);
  const updated = (await listInterfaces()).find((candidate) => candidate.name === iface.name);
  if (!updated) throw new NotFound('interface', iface.name);
  return updated;
}

function ipv4FromHex(hex: string): string {
  const n = Number.parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join('.');
}

/** IPv4 routes from /proc/net/route. */
export async function listRoutes(): Promise<WireNetRoute[]> {
  const text = await readFile('/proc/net/route', 'utf8').catch(() => '');
  const routes: WireNetRoute[] = [];
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 8) continue;
    const [device, destHex, gatewayHex, , , , , maskHex] = fields;
    const prefix = Number.parseInt(maskHex!, 16).toString(2).replace(/0/g, '').length;
    const dest = destHex === '00000000' && prefix === 0 ? 'default' : `${ipv4FromHex(destHex!)}/${prefix}`;
    const gateway = gatewayHex === '00000000' ? '' : ipv4FromHex(gatewayHex!);
    routes.push({ dest, gateway, device: device!, source: '' });
  }
  return routes;
}

export async function updateRoutes(routes: readonly WireNetRoute[]): Promise<WireNetRoute[]> {
  for (const [index, route] of routes.entries()) {
    if (route.dest === '') throw new InvalidArgument(`routes.${index}.dest`, 'required');
    const args = ['route', 'replace', route.dest];
    if (route.gateway !== '') args.push('via', route.gateway);
    if (route.device !== '') args.push('dev', route.device);
    if (route.source !== '') args.push('src', route.source);
    await run('ip route replace', 'ip', args);
  }
  return listRoutes();
}

/** Prometheus text: guest memory, load and per-container usage. */
export async function metrics(
  containers: readonly {
    id: string;
    stats: { cpuUsageUsec: number; memoryUsageBytes: number; pids: number };
  }[],
  timings: { containerRuns: number; containerSeconds: number; execs: number; execSeconds: number },
): Promise<string> {
  const meminfo = await readFile('/proc/meminfo', 'utf8').catch(() => '');
  const loadavg = (await readFile('/proc/loadavg', 'utf8').catch(() => '0 0 0')).split(' ');
  const lines = [
    '# TYPE sandboxd_guest_load1 gauge',
    `sandboxd_guest_load1 ${Number(loadavg[0]) || 0}`,
    '# TYPE sandboxd_guest_meminfo_bytes gauge',
  ];
  for (const key of ['MemTotal', 'MemFree', 'MemAvailable', 'Cached']) {
    const kib = Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? 0);
    lines.push(`sandboxd_guest_meminfo_bytes{field="${key}"} ${kib * 1024}`);
  }
  lines.push('# TYPE sandboxd_container_cpu_usage_usec counter');
  for (const c of containers)
    lines.push(`sandboxd_container_cpu_usage_usec{container="${c.id}"} ${c.stats.cpuUsageUsec}`);
  lines.push('# TYPE sandboxd_container_memory_bytes gauge');
  for (const c of containers)
    lines.push(`sandboxd_container_memory_bytes{container="${c.id}"} ${c.stats.memoryUsageBytes}`);
  lines.push('# TYPE sandboxd_container_pids gauge');
  for (const c of containers) lines.push(`sandboxd_container_pids{container="${c.id}"} ${c.stats.pids}`);
  lines.push(
    '# TYPE sandboxd_agent_crun_seconds summary',
    `sandboxd_agent_crun_seconds_sum{op="run"} ${timings.containerSeconds}`,
    `sandboxd_agent_crun_seconds_count{op="run"} ${timings.containerRuns}`,
    `sandboxd_agent_crun_seconds_sum{op="exec"} ${timings.execSeconds}`,
    `sandboxd_agent_crun_seconds_count{op="exec"} ${timings.execs}`,
  );
  return `${lines.join('\n')}\n`;
}
