// A VM's whole state to a file and back (QMP migrate / migrate-incoming over `exec:cat`): templates (issue 18).
import type { Logger } from 'pino';
import { HypervisorError, Timeout } from '../errors/index.js';
import type { QmpClient } from './qmp.js';

/** A word for /bin/sh: QEMU runs `exec:` URIs through it. */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Pauses the VM and writes its state to `file` with QMP `migrate` to `exec:cat` (QEMU 7.2 has no `file:` URI);
 * resolves once the migration completed. The VM stays paused; the caller fsyncs and renames the file.
 * `qmp()` gives the live session each time (it throws once the VM is gone).
 */
export async function saveVmState(
  qmp: () => QmpClient,
  file: string,
  timeoutMs: number,
  logger: Logger,
): Promise<void> {
  const started = Date.now();
  await qmp().execute('stop');
  await qmp().execute('migrate', { uri: `exec:cat > ${shellQuote(file)}` });
  for (;;) {
    const info = await qmp().execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
    if (info.status === 'completed') break;
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw new HypervisorError('save state', info['error-desc'] ?? `migration ${info.status}`, { file });
    }
    if (Date.now() - started > timeoutMs) throw new Timeout('save state', timeoutMs, { file });
    await sleep(50);
  }
  logger.info({ step: 'save state', file, ms: Date.now() - started }, 'VM state saved');
}

/**
 * Loads the state in `file` into a VM launched with `incoming` (`-incoming defer`) and runs it. A stream that
 * does not fit the VM's devices makes QEMU exit, which `qmp()` reports as a HypervisorError.
 */
export async function restoreVmState(
  qmp: () => QmpClient,
  file: string,
  timeoutMs: number,
  logger: Logger,
): Promise<void> {
  const started = Date.now();
  await qmp().execute('migrate-incoming', { uri: `exec:cat ${shellQuote(file)}` });
  for (;;) {
    const { status } = await qmp().execute<{ status: string }>('query-status');
    // A template is saved paused and QEMU keeps the source's run state: a completed restore is `paused`.
    if (status === 'paused' || status === 'running') break;
    if (status !== 'inmigrate') {
      throw new HypervisorError('restore state', `VM is ${status} after the restore`, { file });
    }
    if (Date.now() - started > timeoutMs) throw new Timeout('restore state', timeoutMs, { file });
    await sleep(20);
  }
  await qmp().execute('cont');
  logger.info({ step: 'restore state', file, ms: Date.now() - started }, 'VM state restored');
}
