// sandboxd-runc's log: pino records, in the file and format the caller names (--log, --log-format), as runc
// writes them: json lines {"level":"error","time":…,"msg":…} (podman reads the last error from them) or
// logrus-style text. Without --log, only --debug logs (to stderr).
import { appendFileSync } from 'node:fs';
import { type DestinationStream, type Logger, pino } from 'pino';

export interface LogOptions {
  readonly log?: string;
  readonly logFormat?: string;
  readonly debug?: boolean;
}

const quote = (v: unknown) => JSON.stringify(typeof v === 'string' ? v : JSON.stringify(v));

/** pino's json lines rewritten as `time="…" level=… msg="…" key=value`. */
function textDestination(path: string): DestinationStream {
  return {
    write(line: string) {
      const { time, level, msg, ...rest } = JSON.parse(line) as Record<string, unknown>;
      const extra = Object.entries(rest).map(([k, v]) => ` ${k}=${quote(v)}`);
      appendFileSync(path, `time=${quote(time)} level=${level} msg=${quote(msg ?? '')}${extra.join('')}\n`);
    },
  };
}

export function openLogger(o: LogOptions): Logger {
  const options = {
    level: o.debug ? 'debug' : 'info',
    base: undefined,
    messageKey: 'msg',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  if (!o.log) {
    return pino({ ...options, level: o.debug ? 'debug' : 'silent' }, pino.destination({ fd: 2, sync: true }));
  }
  const dest =
    o.logFormat === 'json'
      ? pino.destination({ dest: o.log, sync: true, append: true, mkdir: true })
      : textDestination(o.log);
  return pino(options, dest);
}
