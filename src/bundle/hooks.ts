// OCI hooks that run on the host, in the runtime namespace: the container's state JSON on stdin, their own
// args and env, killed at their timeout (runtime-spec config.md "POSIX-platform Hooks").
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import { Internal } from '../errors/index.js';
import type { HostHookPhase, OciHook } from './spec.js';

/** The container state a hook reads on stdin (runtime-spec runtime.md "State"). */
export interface HookState {
  readonly ociVersion: string;
  readonly id: string;
  readonly status: 'creating' | 'created' | 'running' | 'stopped';
  /** The host process that holds the container: the sandbox's QEMU (the container's own pid lives in the guest). */
  readonly pid?: number;
  readonly bundle: string;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** What a hook may print on stderr that ends up in the error: enough to read, bounded. */
const STDERR_KEEP = 4096;

/** Runs one hook to its end; rejects with Internal naming `<phase>[i]` on a non-zero exit, a signal, a timeout. */
function runHook(hook: OciHook, step: string, state: HookState, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const [argv0, ...args] = hook.args && hook.args.length > 0 ? hook.args : [hook.path];
    // The hook's environment is exactly its `env` (runc does the same): nothing of the daemon's leaks in.
    const env = Object.fromEntries(
      (hook.env ?? []).map((entry) => {
        const at = entry.indexOf('=');
        return at < 0 ? [entry, ''] : [entry.slice(0, at), entry.slice(at + 1)];
      }),
    );
    const child = spawn(hook.path, args, {
      argv0: argv0 ?? hook.path,
      env,
      stdio: ['pipe', 'ignore', 'pipe'],
      ...(signal ? { signal, killSignal: 'SIGKILL' as const } : {}),
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      if (stderr.length < STDERR_KEEP) stderr += chunk.toString('utf8').slice(0, STDERR_KEEP - stderr.length);
    });
    let timedOut = false;
    const timer =
      hook.timeout === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, hook.timeout * 1000);
    // A hook that does not read its stdin must not fail the write (EPIPE): the state is offered, not forced.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(JSON.stringify(state));
    const details = { hook: hook.path, containerId: state.id };
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Internal(step, `${hook.path}: ${err.message}`, details, err));
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      if (code === 0) return resolve();
      const why = timedOut
        ? `timed out after ${hook.timeout} s`
        : sig
          ? `killed by ${sig}`
          : `exited ${code}`;
      const tail = stderr.trim();
      reject(
        new Internal(step, `${hook.path} ${why}${tail ? `: ${tail}` : ''}`, { ...details, exitCode: code }),
      );
    });
  });
}

/**
 * Runs a phase's hooks in order. prestart/createRuntime stop at the first failure and reject (the operation
 * fails); poststart/poststop log each failure as a warning and go on (the spec says so), never rejecting.
 */
export async function runHooks(
  phase: HostHookPhase,
  hooks: readonly OciHook[] | undefined,
  state: HookState,
  options: { logger: Logger; signal?: AbortSignal },
): Promise<void> {
  const warnOnly = phase === 'poststart' || phase === 'poststop';
  for (const [i, hook] of (hooks ?? []).entries()) {
    const step = `hook ${phase}[${i}]`;
    try {
      await runHook(hook, step, state, options.signal);
      options.logger.debug({ containerId: state.id, step, hook: hook.path }, 'hook ran');
    } catch (err) {
      if (!warnOnly) throw err;
      options.logger.warn({ err, containerId: state.id, step, hook: hook.path }, 'hook failed (ignored)');
    }
  }
}
