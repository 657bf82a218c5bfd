// The caller's side of runc's --console-socket, as conmon does it: listen on a unix socket, run the command
// (sandboxd-runc create / exec … --console-socket S), receive the pty master over SCM_RIGHTS and read the
// terminal. Node cannot receive fds, so python3 (socket.recv_fds) does it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type OciWorld, runcArgv } from './oci.js';

const SCRIPT = `
import fcntl, json, os, socket, struct, subprocess, sys, termios
path, trigger, rows, cols = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cmd = sys.argv[5:]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
srv.settimeout(120)
conn, _ = srv.accept()
msg, fds, _, _ = socket.recv_fds(conn, 1024, 1)
out, err = p.communicate()
report = {'name': msg.decode(), 'fds': len(fds), 'rc': p.returncode, 'stderr': err.decode()}
print(json.dumps(report), flush=True)
master = fds[0]
data = b''
sized = False
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:
        break
    if not chunk:
        break
    data += chunk
    # Once the process shows it runs, the caller resizes the terminal and lets it go on.
    if not sized and trigger.encode() in data:
        sized = True
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
        os.write(master, b'go\\n')
print(json.dumps({'output': data.decode(errors='replace')}), flush=True)
`;

export interface ConsoleSession {
  /** Once the command ended: what it and the received fd were. */
  readonly handed: Promise<{ name: string; fds: number; rc: number; stderr: string }>;
  /** Everything read from the master until the terminal hung up. */
  readonly output: Promise<string>;
  kill(): void;
}

/**
 * Runs `cmd` (which must get `--console-socket socketPath`), receives the master; when `trigger` appears on
 * the terminal, sets its size to rows×cols and types "go\n".
 */
export function consoleSession(
  socketPath: string,
  cmd: readonly string[],
  o: { trigger: string; rows: number; cols: number },
): ConsoleSession {
  const child = spawn(
    'python3',
    ['-c', SCRIPT, socketPath, o.trigger, String(o.rows), String(o.cols), ...cmd],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  let text = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    text += d;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
      lines.push(text.slice(0, nl));
      text = text.slice(nl + 1);
      for (const w of waiters.splice(0)) w();
    }
  });
  const line = (n: number) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        if (lines.length > n) resolve(JSON.parse(lines[n]!));
        else waiters.push(check);
      };
      child.once('exit', (code) => {
        if (lines.length <= n) reject(new Error(`console receiver exited ${code} before line ${n + 1}`));
      });
      check();
    });
  return {
    handed: line(0) as ConsoleSession['handed'],
    output: line(1).then((l) => String(l.output)),
    kill: () => child.kill('SIGKILL'),
  };
}

/**
 * Runs `sandboxd-runc <command…> --console-socket S --pid-file P <target>` in a console session (files named
 * after `target` in the world's dir), checks the master was handed as runc hands it (one fd, a message naming
 * the slave /dev/pts/N, the command succeeded), then `body` with the keeper's pid and the terminal's output.
 */
export async function withConsole(
  world: Pick<OciWorld, 'root' | 'socket' | 'dir'>,
  o: { command: readonly string[]; target: string; rows: number; cols: number },
  body: (c: { keeper: number; output: Promise<string> }) => Promise<void>,
): Promise<void> {
  const sock = join(world.dir, `${o.target}-console.sock`);
  const pidFile = join(world.dir, `${o.target}-console.pid`);
  const session = consoleSession(
    sock,
    runcArgv(world, [...o.command, '--console-socket', sock, '--pid-file', pidFile, o.target]),
    { trigger: '/dev/pts', rows: o.rows, cols: o.cols },
  );
  try {
    const handed = await session.handed;
    assert.equal(handed.rc, 0, handed.stderr);
    assert.equal(handed.fds, 1, 'one fd (the master) in the SCM_RIGHTS message');
    assert.match(handed.name, /^\/dev\/pts\/\d+$/, 'the message names the slave, as runc sends it');
    await body({ keeper: Number(await readFile(pidFile, 'utf8')), output: session.output });
  } finally {
    session.kill();
  }
}
