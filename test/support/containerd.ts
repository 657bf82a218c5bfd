// A real containerd (Debian's 1.6) for tests: its own root, state, sockets and config in a temp dir,
// stopped by pid afterwards; plus ctr against it.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mountsUnder, unmountAllUnder } from '../../src/actors/index.js';

export interface Containerd {
  readonly dir: string;
  /** The gRPC socket (ctr --address). */
  readonly address: string;
  /** The ttrpc socket shims publish events to (TTRPC_ADDRESS). */
  readonly ttrpcAddress: string;
  /** The pid of the containerd running now (it changes with restart()). */
  readonly pid: number;
  output(): string;
  /** Kills containerd with SIGKILL (its shims live on) and waits for it to be gone. */
  kill9(): Promise<void>;
  /** Starts containerd again on the same config, root, state and sockets; resolves once it answers. */
  restart(): Promise<void>;
  /** Runs ctr against this containerd to its end. */
  ctr(
    args: readonly string[],
    options?: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv },
  ): Promise<CtrResult>;
  /** Starts a long-running ctr (e.g. `events`) and collects its stdout. */
  ctrSpawn(args: readonly string[]): { child: ChildProcess; stdout: () => string };
  stop(): Promise<void>;
}

export interface CtrResult {
  readonly code: number;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export async function startContainerd(
  /** `cri`: keep containerd's CRI plugin (its settings then come in `config`); off by default. */
  options: { config?: string; env?: NodeJS.ProcessEnv; cri?: boolean } = {},
): Promise<Containerd> {
  const dir = await mkdtemp(join(tmpdir(), 'ctrd-'));
  const address = join(dir, 'containerd.sock');
  const config = join(dir, 'config.toml');
  await writeFile(
    config,
    [
      'version = 2',
      `root = "${join(dir, 'root')}"`,
      `state = "${join(dir, 'state')}"`,
      options.cri ? '' : 'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${address}"`,
      '[debug]',
      '  level = "info"',
      options.config ?? '',
    ].join('\n'),
  );
  let out = '';
  let child: ChildProcess;
  let exited: Promise<void>;
  const launch = () => {
    child = spawn('containerd', ['--config', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...options.env },
    });
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    const c = child;
    exited = new Promise<void>((r) => c.once('exit', () => r()));
  };
  launch();
  const running = () => child.exitCode === null && child.signalCode === null;
  const ctr: Containerd['ctr'] = (args, o = {}) =>
    new Promise((resolve, reject) => {
      const c = spawn('ctr', ['--address', address, ...args], {
        stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        env: { ...process.env, ...o.env },
      });
      if (o.input !== undefined) c.stdin?.end(o.input);
      let stdout = '';
      let stderr = '';
      c.stdout?.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
      });
      c.stderr?.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      const timer = setTimeout(() => {
        c.kill('SIGKILL');
        reject(new Error(`ctr ${args.join(' ')} timed out\nstdout: ${stdout}\nstderr: ${stderr}`));
      }, o.timeoutMs ?? 120_000);
      c.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, signal, stdout, stderr });
      });
    });
  // Every step runs even if one fails: a task's rootfs still mounted under the state dir must not keep
  // containerd's dir (or what the caller stops next) behind. Mounts left are unmounted, then reported.
  const stop = async () => {
    const errors: string[] = [];
    if (running()) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    const mounted = await mountsUnder(dir);
    if (mounted.length > 0) errors.push(`mounts under containerd's dir: ${mounted.join(', ')}`);
    await unmountAllUnder(dir).catch((err: Error) => errors.push(err.message));
    await rm(dir, { recursive: true, force: true }).catch((err: Error) => errors.push(err.message));
    if (errors.length > 0) throw new Error(`containerd stop: ${errors.join('; ')}`);
  };
  // Ready once the gRPC socket answers.
  const ready = async () => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (!running()) throw new Error(`containerd exited ${child.exitCode}:\n${out}`);
      if (existsSync(address)) {
        const v = await ctr(['version'], { timeoutMs: 10_000 }).catch(() => undefined);
        if (v?.code === 0) return;
      }
      if (Date.now() > deadline) throw new Error(`containerd not ready in 30 s:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  try {
    await ready();
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return {
    dir,
    address,
    ttrpcAddress: `${address}.ttrpc`,
    get pid() {
      return child.pid as number;
    },
    output: () => out,
    async kill9() {
      if (!running()) return;
      child.kill('SIGKILL');
      await exited;
    },
    async restart() {
      if (running()) throw new Error('containerd is still running');
      launch();
      await ready();
    },
    ctr,
    ctrSpawn(args) {
      const c = spawn('ctr', ['--address', address, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      c.stdout?.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
      });
      c.stderr?.resume(); // ctr's warnings are not part of what the tests read
      return { child: c, stdout: () => stdout };
    },
    stop,
  };
}

/** Polls `check` every 50 ms until it returns a value (not undefined) or `timeoutMs` passes. */
export async function until<T>(
  what: string,
  check: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
