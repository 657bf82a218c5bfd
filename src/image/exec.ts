// Runs the host tools the image builder needs (apt, dpkg-deb, tar, ldd, xz) and turns failures into errors naming the step.
import { spawn } from 'node:child_process';
import { Internal } from '../errors/index.js';

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

/** Runs `command args…` without a shell; resolves with its output whatever the exit code (check `code`). */
export function run(
  command: string,
  args: readonly string[],
  options: { cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error) => reject(new Internal(`image: run ${command}`, error.message, {}, error)));
    child.on('close', (code, signal) =>
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        code: code ?? (signal ? 128 : 1),
      }),
    );
  });
}

/** Like run, but a non-zero exit throws Internal with the step name and the tool's stderr. */
export async function runChecked(
  step: string,
  command: string,
  args: readonly string[],
  options: { cwd?: string } = {},
): Promise<string> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new Internal(step, `${command} exited ${result.code}: ${result.stderr.trim().slice(-2000)}`, {
      command,
      args,
    });
  }
  return result.stdout;
}
