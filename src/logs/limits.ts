// The daemon's log limits from flags / env: sizes as bytes with an optional k, m or g (powers of 1024).
import { InvalidArgument } from '../errors/index.js';
import { DEFAULT_LOG_LIMITS, type LogLimits, MIN_LOG_FILE_BYTES } from './writer.js';

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** "10m" → 10485760. InvalidArgument(field) when malformed or below the minimum. */
export function parseSize(field: string, text: string): number {
  const m = /^(\d+)([kmg]?)i?b?$/i.exec(text.trim());
  const bytes = m ? Number(m[1]) * UNITS[m[2]!.toLowerCase()]! : Number.NaN;
  if (!Number.isSafeInteger(bytes)) {
    throw new InvalidArgument(field, `${JSON.stringify(text)} is not a size (bytes, or with k, m, g)`);
  }
  if (bytes < MIN_LOG_FILE_BYTES) {
    throw new InvalidArgument(field, `${text} is below the minimum of ${MIN_LOG_FILE_BYTES} bytes`);
  }
  return bytes;
}

/** Limits from the flag values (each may be absent: its default). */
export function logLimitsFrom(maxSize?: string, maxFiles?: string): LogLimits {
  let files = DEFAULT_LOG_LIMITS.maxFiles;
  if (maxFiles !== undefined) {
    files = Number(maxFiles);
    if (!Number.isInteger(files) || files < 1 || files > 1000) {
      throw new InvalidArgument('logMaxFiles', `${JSON.stringify(maxFiles)} is not a count from 1 to 1000`);
    }
  }
  return {
    maxFileBytes: maxSize === undefined ? DEFAULT_LOG_LIMITS.maxFileBytes : parseSize('logMaxSize', maxSize),
    maxFiles: files,
  };
}
