// Progress while a sandbox boots: an ora spinner on a terminal, one plain line otherwise.
import ora from 'ora';

/** Runs `fn` showing `text`; the spinner (TTY only) ends with the elapsed time or the failure. */
export async function withBootProgress<T>(text: string, fn: () => Promise<T>, enabled = true): Promise<T> {
  const started = Date.now();
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
  if (!enabled) return fn();
  // A terminal that reports 0 columns (script(1), some CI ptys) makes ora erase lines without end: plain line.
  if (!process.stderr.isTTY || !(process.stderr.columns > 0)) {
    process.stderr.write(`${text}…\n`);
    const out = await fn();
    process.stderr.write(`${text}: done in ${elapsed()}\n`);
    return out;
  }
  const spinner = ora({ text, stream: process.stderr }).start();
  try {
    const out = await fn();
    spinner.succeed(`${text}: done in ${elapsed()}`);
    return out;
  } catch (err) {
    spinner.fail(`${text}: failed after ${elapsed()}`);
    throw err;
  }
}
