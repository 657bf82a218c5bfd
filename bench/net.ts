// Benchmark of a sandbox's network paths, in one run: TCP throughput (peer → guest and guest → peer) and
// round-trip latency between the host and a busybox server over (a) netns mode: a CNI namespace's veth joined
// to the VM's tap by tc mirred redirects, (b) QEMU's user-mode network (slirp) through forwarded host ports,
// and (c) the same busybox servers running in a CNI namespace of their own, host ⇄ bridge ⇄ veth (the floor:
// what (a) costs without the tap and the VM). Rounds are interleaved so a change of load weighs on all three.
// Traffic only goes to 127.0.0.1 and to namespaces this run makes. Table, then one JSON line. Run as root.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Table from 'cli-table3';
import { unmountAllUnder } from '../src/actors/index.js';
import { createBusyboxBundle } from '../src/image/index.js';
import { openRealWorld, type RealWorld } from '../test/fixtures/hypervisor-world.js';
import { CniBridge, CniNamespace } from '../test/support/cni.js';
import { freePort, qemuPidsUsing, until } from '../test/support/vm.js';

const quick = process.argv.includes('--quick');
const rounds = quick ? 1 : 3;
const MIB = 1 << 20;
const transferMiB = quick ? 8 : 32;
const pings = quick ? 200 : 1000;
/** No single transfer or ping series may run longer than this (the bench stops by itself). */
const STEP_MS = 120_000;
const ECHO = 9000;
const SINK = 9001;
const SOURCE = 9002;

/**
 * The servers, as busybox applets (the guest's container and the floor's namespace run the same binary): an
 * echo (one byte back per byte), a sink that answers with its count of 64 KiB blocks once the peer half-closes, a source
 * that sends transferMiB of zeros and closes.
 */
const SERVERS = [
  `busybox nc -ll -p ${ECHO} -e busybox cat &`,
  // dd, not wc -c: busybox's wc reads a byte at a time, which would cap the guest's receive rate itself.
  `busybox nc -ll -p ${SINK} -e busybox sh -c 'busybox dd of=/dev/null bs=65536 iflag=fullblock 2>&1' &`,
  `exec busybox nc -ll -p ${SOURCE} -e busybox sh -c 'busybox dd if=/dev/zero bs=65536 count=${transferMiB * 16} 2>/dev/null'`,
].join(' ');

interface Endpoint {
  readonly host: string;
  readonly ports: Readonly<Record<'echo' | 'sink' | 'source', number>>;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function percentile(values: readonly number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!;
}

const round1 = (v: number) => Math.round(v * 10) / 10;

function bounded<T>(what: string, work: (done: (v: T) => void, fail: (e: Error) => void) => Socket) {
  return new Promise<T>((resolve, reject) => {
    let socket: Socket | undefined;
    const timer = setTimeout(() => {
      socket?.destroy();
      reject(new Error(`${what}: not within ${STEP_MS} ms`));
    }, STEP_MS);
    const settle =
      <A>(f: (a: A) => void) =>
      (a: A) => {
        clearTimeout(timer);
        socket?.destroy();
        f(a);
      };
    socket = work(settle(resolve), settle(reject));
    socket.once('error', settle(reject));
  });
}

/** Median and 99th percentile of `pings` one-byte round trips on one connection, in µs. */
function latency(ep: Endpoint): Promise<{ p50: number; p99: number }> {
  return bounded('latency', (done, fail) => {
    const times: number[] = [];
    const warmup = 20;
    let sent = 0n;
    const s = connect(ep.ports.echo, ep.host, () => {
      s.setNoDelay(true);
      sent = process.hrtime.bigint();
      s.write('x');
    });
    let pending = 0;
    s.on('data', (chunk) => {
      pending += chunk.length;
      if (pending > 1) return fail(new Error(`echo sent ${pending} bytes for one`));
      pending = 0;
      times.push(Number(process.hrtime.bigint() - sent) / 1000);
      if (times.length === warmup + pings) {
        const kept = times.slice(warmup);
        return done({ p50: round1(median(kept)), p99: round1(percentile(kept, 99)) });
      }
      sent = process.hrtime.bigint();
      s.write('x');
    });
    s.once('end', () => fail(new Error('echo closed early')));
    return s;
  });
}

/** Peer → guest: writes transferMiB and half-closes; done when the sink's byte count comes back. Mbit/s. */
function upload(ep: Endpoint): Promise<number> {
  return bounded('upload', (done, fail) => {
    const total = transferMiB * MIB;
    const chunk = Buffer.alloc(64 * 1024);
    let t0 = 0;
    let answer = '';
    const s = connect(ep.ports.sink, ep.host, () => {
      t0 = performance.now();
      let left = total;
      const pump = () => {
        while (left > 0) {
          left -= chunk.length;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    });
    s.on('data', (d) => {
      answer += d.toString();
    });
    s.once('end', () => {
      const ms = performance.now() - t0;
      const blocks = /^(\d+)\+0 records in$/m.exec(answer)?.[1];
      if (Number(blocks) * chunk.length !== total)
        return fail(new Error(`sink counted ${JSON.stringify(answer)} for ${total} bytes`));
      done(round1((total * 8) / 1e6 / (ms / 1000)));
    });
    return s;
  });
}

/** Guest → peer: reads the source's transferMiB until it closes. Mbit/s. */
function download(ep: Endpoint): Promise<number> {
  return bounded('download', (done, fail) => {
    const total = transferMiB * MIB;
    let t0 = 0;
    let got = 0;
    const s = connect(ep.ports.source, ep.host, () => {
      t0 = performance.now();
    });
    s.on('data', (d) => {
      got += d.length;
    });
    s.once('end', () => {
      const ms = performance.now() - t0;
      if (got !== total) return fail(new Error(`source sent ${got} of ${total}`));
      done(round1((total * 8) / 1e6 / (ms / 1000)));
    });
    return s;
  });
}

/** Waits until the echo answers: the servers are up (slirp accepts before the guest listens, so a byte must come back). */
async function ready(what: string, ep: Endpoint): Promise<void> {
  await until(
    `${what}: the echo answers`,
    120_000,
    () =>
      new Promise<true | undefined>((resolve) => {
        const s = connect(ep.ports.echo, ep.host, () => s.write('x'));
        const t = setTimeout(() => {
          s.destroy();
          resolve(undefined);
        }, 3000);
        s.once('data', () => {
          clearTimeout(t);
          s.destroy();
          resolve(true);
        });
        s.once('error', () => {
          clearTimeout(t);
          resolve(undefined);
        });
        s.once('close', () => {
          clearTimeout(t);
          resolve(undefined);
        });
      }),
  );
}

const octet = 10 + ((process.pid + 150) % 200);
const dir = await mkdtemp(join(tmpdir(), 'sbx-bench-net-'));
const bridge = new CniBridge(`sbxnb${process.pid}`.slice(0, 15), octet, dir, '10.216');
const spaces: CniNamespace[] = [];
let world: RealWorld | undefined;
let floor: ChildProcess | undefined;
try {
  const tapNs = new CniNamespace(`sbxnbt${process.pid}`);
  spaces.push(tapNs);
  const tapIp = tapNs.add(bridge).split('/')[0] as string;
  const floorNs = new CniNamespace(`sbxnbf${process.pid}`);
  spaces.push(floorNs);
  const floorIp = floorNs.add(bridge).split('/')[0] as string;
  const bundle = join(dir, 'servers');
  await createBusyboxBundle(bundle, { args: ['sh', '-c', SERVERS] });
  const fwd = { echo: await freePort(), sink: await freePort(), source: await freePort() };

  world = await openRealWorld(join(dir, 'world'));
  const rt = world.runtime;
  await rt.createSandbox('tap', { network: { mode: 'netns', path: tapNs.path } });
  await rt.createSandbox('slirp', {
    network: 'user',
    ports: [
      { hostPort: fwd.echo, guestPort: ECHO },
      { hostPort: fwd.sink, guestPort: SINK },
      { hostPort: fwd.source, guestPort: SOURCE },
    ],
  });
  for (const sb of ['tap', 'slirp']) {
    await rt.startSandbox(sb);
    await rt.createContainer({ sandboxId: sb, id: 'servers', bundle });
    await rt.startContainer(sb, 'servers');
  }
  floor = spawn('ip', ['netns', 'exec', floorNs.name, 'busybox', 'sh', '-c', SERVERS], {
    stdio: 'ignore',
    detached: true,
  });
  const own = { echo: ECHO, sink: SINK, source: SOURCE };
  const paths: Record<'tap' | 'slirp' | 'veth', Endpoint> = {
    tap: { host: tapIp, ports: own },
    slirp: { host: '127.0.0.1', ports: fwd },
    veth: { host: floorIp, ports: own },
  };
  for (const [name, ep] of Object.entries(paths)) await ready(name, ep);

  const results: Record<string, { up: number[]; down: number[]; p50: number[]; p99: number[] }> = {};
  for (const name of Object.keys(paths)) results[name] = { up: [], down: [], p50: [], p99: [] };
  for (let i = 0; i < rounds; i++) {
    for (const [name, ep] of Object.entries(paths)) {
      const r = results[name]!;
      const lat = await latency(ep);
      r.p50.push(lat.p50);
      r.p99.push(lat.p99);
      r.up.push(await upload(ep));
      r.down.push(await download(ep));
    }
  }
  const m = (name: string, k: 'up' | 'down' | 'p50' | 'p99') => round1(median(results[name]![k]));
  const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
  const table = new Table({
    head: ['path', 'peer → guest Mbit/s', 'guest → peer Mbit/s', 'RTT p50 µs', 'RTT p99 µs'],
  });
  const label = {
    tap: 'netns: veth ⇄ tc mirred ⇄ tap ⇄ VM',
    slirp: 'user network (slirp), forwarded ports',
    veth: 'veth ⇄ veth on the host (floor)',
  } as const;
  for (const name of ['tap', 'slirp', 'veth'] as const)
    table.push([label[name], m(name, 'up'), m(name, 'down'), m(name, 'p50'), m(name, 'p99')]);
  const tapVsSlirp = {
    up: ratio(m('tap', 'up'), m('slirp', 'up')),
    down: ratio(m('tap', 'down'), m('slirp', 'down')),
    rtt: ratio(m('slirp', 'p50'), m('tap', 'p50')),
  };
  const floorVsTap = {
    up: ratio(m('veth', 'up'), m('tap', 'up')),
    down: ratio(m('veth', 'down'), m('tap', 'down')),
    rtt: ratio(m('tap', 'p50'), m('veth', 'p50')),
  };
  table.push(
    ['tap+tc / slirp (throughput; RTT slirp / tap)', tapVsSlirp.up, tapVsSlirp.down, tapVsSlirp.rtt, ''],
    ['floor / tap+tc (throughput; RTT tap / floor)', floorVsTap.up, floorVsTap.down, floorVsTap.rtt, ''],
    ['machine load (1 min)', loadavg()[0]!.toFixed(1), '', '', ''],
  );
  process.stdout.write(`${table.toString()}\n`);
  const figures = Object.fromEntries(
    (['tap', 'slirp', 'veth'] as const).map((n) => [
      n,
      { upMbps: m(n, 'up'), downMbps: m(n, 'down'), rttP50Us: m(n, 'p50'), rttP99Us: m(n, 'p99') },
    ]),
  );
  process.stdout.write(
    `${JSON.stringify({
      bench: 'net',
      rounds,
      transferMiB,
      pings,
      ...figures,
      tapVsSlirp,
      floorVsTap,
      targetTapVsSlirpThroughput: 3,
      loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
    })}\n`,
  );
} finally {
  if (floor?.pid) {
    try {
      process.kill(-floor.pid, 'SIGKILL');
    } catch {
      // ended already
    }
  }
  if (world) {
    for (const sb of ['tap', 'slirp'])
      await world.runtime.deleteSandbox(sb, { force: true }).catch(() => undefined);
    await world.close().catch(() => undefined);
  }
  for (const pid of await qemuPidsUsing(dir)) process.kill(pid, 'SIGKILL');
  await unmountAllUnder(dir).catch(() => undefined);
  for (const ns of spaces) ns.close();
  bridge.remove();
  await rm(dir, { recursive: true, force: true });
}
