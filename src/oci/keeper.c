// sandboxd-runc-keeper: the host process that stands for one process (a container's init or an exec) running in
// a sandboxd VM, so that whoever waits on a host pid (conmon, a shell) sees that process's life and exit status.
// It is a JSON-RPC client of the daemon: it follows the process's output (exec.output follow) and its exit
// (container.wait / exec.wait), copies its own stdin to the process (exec.writeStdin), forwards the signals it
// gets (container.kill / exec.kill) and, with --console-socket, hands a host pty master to the caller over that
// socket (SCM_RIGHTS) and relays the slave, window size included. When the daemon goes away it reconnects and
// asks again: the exit is in the daemon's log, so an exit that happened meanwhile still arrives, and the output goes
// on from the host log's offset after the last chunk written. See docs/oci-cli.md.
//
// usage: sandboxd-runc-keeper --socket S --sandbox SB --container C [--exec E] [--console-socket P]
//                             [--ready-fd N] [--delete-exec]
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char *sock_path, *sandbox_id, *container_id, *exec_id = "", *console_path;
static int ready_fd = -1, delete_exec;
static int in_fd = 0, out_fd = 1, err_fd = 2, tty_fd = -1;
static int sig_pipe[2];

static int conn = -1;
static char *rbuf;
static size_t rlen, rcap;
static int next_id = 1;
static int follow_id, wait_id, op_id, resize_id, delete_id;
static int following;           // exec.output follow answered on this connection
// The host log's offset after the last chunk written to our fds (its `next`): a follow on a new connection starts
// there, so nothing is written twice or lost, even when the log's start was rotated away meanwhile. -1: none yet.
static long long resume_at = -1;
static int ends;                // exec.outputEnd received (one per stream)
static int exited = -1;         // the exit code once known
static long long exited_at;     // when the exit became known (ms)

// Stdin: one chunk (or the close) in flight at a time; the next read waits for its answer.
static char *op_line;           // the pending exec.writeStdin / exec.closeStdin request (without id)
static int op_tries;
static long long op_retry_at;
static int stdin_open = 1;
static int resize_wanted, resize_tries;
static long long resize_retry_at;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logf_(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  // Structured like the rest of sandboxd's logs, on the keeper's own stderr only when asked (SANDBOXD_KEEPER_LOG).
  const char *path = getenv("SANDBOXD_KEEPER_LOG");
  if (!path) return;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  dprintf(fd, "{\"name\":\"sandboxd-runc-keeper\",\"time\":%lld,\"pid\":%d,\"sandboxId\":\"%s\",\"containerId\":\"%s\",\"execId\":\"%s\",\"msg\":\"%s\"}\n",
          (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, getpid(), sandbox_id, container_id, exec_id, buf);
  close(fd);
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;  // the reader went away: the output is lost, as it would be for the process itself
    }
    p += w;
    n -= (size_t)w;
  }
}

// ---- base64 --------------------------------------------------------------------------------------------------

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_encode(const unsigned char *in, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
    out[o++] = b64[v >> 18 & 63];
    out[o++] = b64[v >> 12 & 63];
    out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
    out[o++] = i + 2 < n ? b64[v & 63] : '=';
  }
  return o;
}

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Decodes in place up to the closing quote; returns the byte count.
static size_t b64_decode(char *s) {
  unsigned char *out = (unsigned char *)s;
  size_t o = 0;
  unsigned v = 0;
  int bits = 0;
  for (char *p = s; *p && *p != '"'; p++) {
    int d = b64_value(*p);
    if (d < 0) continue;
    v = v << 6 | (unsigned)d;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(v >> bits & 0xff);
    }
  }
  return o;
}

// ---- the connection --------------------------------------------------------------------------------------------

// The daemon writes compact JSON (JSON.stringify): `"key":value` with no spaces, and the values looked for here
// (ids, stream names, base64, numbers) never contain quotes, so a search for the key is a sufficient parser.
static char *field(char *line, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  char *p = strstr(line, pat);
  return p ? p + strlen(pat) : NULL;
}

static void send_line(const char *s) {
  if (conn < 0) return;
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(conn, s, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;  // the read side sees the hang-up and reconnects
    }
    s += w;
    n -= (size_t)w;
  }
}

static char ref[512];  // "sandboxId":…,"containerId":…,"execId":…

static int request(const char *method, const char *params) {
  if (conn < 0) return 0;
  int id = next_id++;
  size_t n = strlen(params) + strlen(method) + 128;
  char *s = malloc(n);
  if (!s) return 0;
  snprintf(s, n, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"%s\",\"params\":{%s}}\n", id, method, params);
  send_line(s);
  free(s);
  return id;
}

static void ask_wait(void) {
  char p[640];
  if (*exec_id) {
    snprintf(p, sizeof p, "%s", ref);
    wait_id = request("exec.wait", p);
  } else {
    snprintf(p, sizeof p, "\"sandboxId\":\"%s\",\"id\":\"%s\"", sandbox_id, container_id);
    wait_id = request("container.wait", p);
  }
}

// exec.output with follow, from the offset after the last chunk written (from the start the first time).
static void ask_follow(void) {
  char p[700];
  if (resume_at >= 0) snprintf(p, sizeof p, "%s,\"follow\":true,\"offset\":%lld", ref, resume_at);
  else snprintf(p, sizeof p, "%s,\"follow\":true", ref);
  follow_id = request("exec.output", p);
}

static int connect_daemon(void) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return -1;
  }
  conn = fd;
  rlen = 0;
  following = 0;
  ends = 0;
  ask_follow();
  if (exited < 0) ask_wait();
  op_id = resize_id = 0;
  logf_("connected, output from offset %lld", resume_at < 0 ? 0 : resume_at);
  return 0;
}

static void disconnect(void) {
  if (conn >= 0) close(conn);
  conn = -1;
  op_id = resize_id = 0;
  logf_("daemon connection lost");
}

static void ready(const char *msg) {
  if (ready_fd < 0) return;
  write_all(ready_fd, msg, strlen(msg));
  close(ready_fd);
  ready_fd = -1;
}

static void on_output(char *line) {
  char *stream = field(line, "stream");
  char *data = field(line, "data");
  char *next = field(line, "next");
  if (!stream || !data || *data != '"') return;
  // Read before the data is decoded in place (the decoding stays within the data's quotes, but order is cheap).
  long long at = next ? atoll(next) : -1;
  int i = strncmp(stream, "\"stderr\"", 8) == 0 ? 1 : 0;
  size_t n = b64_decode(data + 1);
  write_all(i == 1 ? err_fd : out_fd, data + 1, n);
  if (at >= 0) resume_at = at;
}

static void on_response(char *line, int id) {
  char *err = field(line, "error");
  int code = 0;
  if (err) {
    char *c = field(err, "code");
    code = c ? atoi(c) : -32000;
  }
  if (id == follow_id) {
    if (err) {
      logf_("exec.output failed %d", code);
      ready("error: the process is not known to sandboxd\n");
      exit(code == -32001 ? 127 : 1);
    }
    following = 1;
    ready("ok\n");
  } else if (id == wait_id) {
    if (err) {
      // The process is gone without a recorded exit (deleted meanwhile): like a SIGKILL.
      exited = code == -32001 ? 137 : 255;
    } else {
      char *c = field(line, "exitCode");
      exited = c ? atoi(c) : 255;
    }
    exited_at = now_ms();
    logf_("exited %d", exited);
  } else if (id == op_id) {
    op_id = 0;
    // A process not started yet (create, then start later) or a busy agent: try again, for a while.
    if (err && code != -32001 && ++op_tries < 3000 && exited < 0) {
      op_retry_at = now_ms() + 100;
      return;
    }
    free(op_line);
    op_line = NULL;
    op_tries = 0;
    if (err) stdin_open = 0;
  } else if (id == resize_id) {
    resize_id = 0;
    if (err && code != -32001 && ++resize_tries < 3000 && exited < 0) {
      resize_wanted = 1;
      resize_retry_at = now_ms() + 100;
    } else {
      resize_tries = 0;
    }
  } else if (id == delete_id) {
    delete_id = -1;
  }
}

static void on_line(char *line) {
  char *id = field(line, "id");
  if (id && *id >= '0' && *id <= '9') {
    on_response(line, atoi(id));
    return;
  }
  char *method = field(line, "method");
  if (!method) return;
  if (strncmp(method, "\"exec.output\"", 13) == 0) on_output(line);
  else if (strncmp(method, "\"exec.outputEnd\"", 16) == 0) ends++;
  else if (strncmp(method, "\"subscription.dropped\"", 22) == 0) {
    // We read too slowly for the daemon (its queue for us overflowed): follow again from the last chunk written.
    logf_("output follow dropped by the daemon, again from offset %lld", resume_at < 0 ? 0 : resume_at);
    ends = 0;
    ask_follow();
  }
}

static void read_conn(void) {
  if (rcap - rlen < 65536) {
    size_t cap = rcap ? rcap * 2 : 131072;
    char *b = realloc(rbuf, cap);
    if (!b) return;
    rbuf = b;
    rcap = cap;
  }
  ssize_t n = read(conn, rbuf + rlen, rcap - rlen - 1);
  if (n < 0 && errno == EINTR) return;
  if (n <= 0) {
    disconnect();
    return;
  }
  rlen += (size_t)n;
  size_t start = 0;
  for (size_t i = rlen - (size_t)n; i < rlen; i++) {
    if (rbuf[i] != '\n') continue;
    rbuf[i] = 0;
    on_line(rbuf + start);
    start = i + 1;
  }
  memmove(rbuf, rbuf + start, rlen - start);
  rlen -= start;
  // Large notifications stay whole; a buffer that grew for one shrinks back later.
  if (rlen == 0 && rcap > 4 * 1048576) {
    free(rbuf);
    rbuf = NULL;
    rcap = 0;
  }
}

// ---- stdin, signals, terminal ----------------------------------------------------------------------------------

static void send_op(void) {
  if (!op_line || op_id || conn < 0 || !following) return;
  if (op_retry_at && now_ms() < op_retry_at) return;
  op_retry_at = 0;
  const char *method = op_line[0] == 'W' ? "exec.writeStdin" : "exec.closeStdin";
  op_id = request(method, op_line + 1);
}

static void read_stdin(void) {
  enum { CHUNK = 48 * 1024 };
  static unsigned char buf[CHUNK];
  ssize_t n = read(in_fd, buf, CHUNK);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    stdin_open = 0;
    // A terminal's slave reads EIO once its master is closed: the terminal hung up, nothing to close.
    if (tty_fd >= 0) return;
    size_t len = strlen(ref) + 2;
    op_line = malloc(len);
    if (!op_line) return;
    snprintf(op_line, len, "C%s", ref);
    send_op();
    return;
  }
  size_t len = strlen(ref) + 16 + (size_t)(n + 2) / 3 * 4;
  op_line = malloc(len);
  if (!op_line) return;
  int at = snprintf(op_line, len, "W%s,\"data\":\"", ref);
  at += (int)b64_encode(buf, (size_t)n, op_line + at);
  op_line[at++] = '"';
  op_line[at] = 0;
  send_op();
}

static void send_resize(void) {
  if (!resize_wanted || resize_id || conn < 0 || !following) return;
  if (resize_retry_at && now_ms() < resize_retry_at) return;
  resize_retry_at = 0;
  struct winsize ws;
  if (ioctl(tty_fd, TIOCGWINSZ, &ws) < 0 || ws.ws_row == 0 || ws.ws_col == 0) {
    resize_wanted = 0;
    return;
  }
  char p[700];
  snprintf(p, sizeof p, "%s,\"rows\":%u,\"cols\":%u", ref, ws.ws_row, ws.ws_col);
  resize_wanted = 0;
  resize_id = request("exec.resize", p);
}

static void forward_signal(int sig) {
  char p[700];
  if (*exec_id) {
    snprintf(p, sizeof p, "%s,\"signal\":%d", ref, sig);
    request("exec.kill", p);
  } else {
    snprintf(p, sizeof p, "\"sandboxId\":\"%s\",\"id\":\"%s\",\"signal\":%d", sandbox_id, container_id, sig);
    request("container.kill", p);
  }
  logf_("forwarded signal %d", sig);
}

static void on_signal(int sig) {
  unsigned char s = (unsigned char)sig;
  int saved = errno;
  (void)!write(sig_pipe[1], &s, 1);
  errno = saved;
}

static void catch_signals(void) {
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int s = 1; s < NSIG; s++) {
    if (s == SIGKILL || s == SIGSTOP || s == SIGCHLD || s == SIGPIPE) continue;
    sigaction(s, &sa, NULL);
  }
  signal(SIGPIPE, SIG_IGN);
}

// A host pty: the master goes to the caller over the console socket (as runc does), the slave is relayed.
static void open_console(void) {
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
    perror("sandboxd-runc-keeper: pty");
    exit(1);
  }
  char *name = ptsname(master);
  int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) {
    perror("sandboxd-runc-keeper: pty slave");
    exit(1);
  }
  // The terminal discipline is the guest's pty's: ours passes bytes through untouched.
  struct termios t;
  if (tcgetattr(slave, &t) == 0) {
    cfmakeraw(&t);
    tcsetattr(slave, TCSANOW, &t);
  }
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", console_path);
  if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
    perror("sandboxd-runc-keeper: console socket");
    exit(1);
  }
  char cbuf[CMSG_SPACE(sizeof(int))] = {0};
  struct iovec iov = {.iov_base = name, .iov_len = strlen(name)};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &master, sizeof(int));
  if (sendmsg(s, &m, 0) < 0) {
    perror("sandboxd-runc-keeper: send console");
    exit(1);
  }
  close(s);
  close(master);
  // The slave as our controlling terminal: a resize of the master then reaches us as SIGWINCH.
  setsid();
  ioctl(slave, TIOCSCTTY, 0);
  // The terminal is the process's stdio, as runc makes it: the fds the caller gave create (conmon's pipes) are
  // let go, so that whoever reads them to their end is not kept waiting for the container.
  for (int fd = 0; fd <= 2; fd++) dup2(slave, fd);
  tty_fd = in_fd = out_fd = err_fd = slave;
  resize_wanted = 1;
}

// Whether a keeper of one of this container's execs (same daemon socket, sandbox and container) still exists,
// a zombie included (a zombie's pid still answers kill(pid, 0)).
static int exec_keeper_left(void) {
  DIR *d = opendir("/proc");
  if (!d) return 0;
  struct dirent *e;
  int found = 0;
  char path[300], buf[4096];
  while (!found && (e = readdir(d))) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9' || atoi(e->d_name) == getpid()) continue;
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) continue;
    buf[n] = 0;
    const char *argv0 = strrchr(buf, '/');
    if (strcmp(argv0 ? argv0 + 1 : buf, "sandboxd-runc-keeper") != 0) continue;
    // The arguments, NUL-separated: each flag's value follows it.
    const char *sock = NULL, *sb = NULL, *ctr = NULL, *ex = NULL;
    for (char *a = buf + strlen(buf) + 1; a < buf + n; a += strlen(a) + 1) {
      char *v = a + strlen(a) + 1;
      if (v >= buf + n) break;
      if (!strcmp(a, "--socket")) sock = v;
      else if (!strcmp(a, "--sandbox")) sb = v;
      else if (!strcmp(a, "--container")) ctr = v;
      else if (!strcmp(a, "--exec")) ex = v;
    }
    found = ex && sock && sb && ctr && !strcmp(sock, sock_path) && !strcmp(sb, sandbox_id) &&
            !strcmp(ctr, container_id);
  }
  closedir(d);
  return found;
}

static void usage(void) {
  fprintf(stderr,
          "usage: sandboxd-runc-keeper --socket S --sandbox SB --container C [--exec E] [--console-socket P] "
          "[--ready-fd N] [--delete-exec]\n");
  exit(2);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--delete-exec")) {
      delete_exec = 1;
      continue;
    }
    if (!v) usage();
    if (!strcmp(a, "--socket")) sock_path = v;
    else if (!strcmp(a, "--sandbox")) sandbox_id = v;
    else if (!strcmp(a, "--container")) container_id = v;
    else if (!strcmp(a, "--exec")) exec_id = v;
    else if (!strcmp(a, "--console-socket")) console_path = v;
    else if (!strcmp(a, "--ready-fd")) ready_fd = atoi(v);
    else usage();
    i++;
  }
  if (!sock_path || !sandbox_id || !container_id) usage();
  // Ids are checked by sandboxd-runc (^[A-Za-z0-9][A-Za-z0-9_.-]*$): nothing in them needs JSON escaping.
  snprintf(ref, sizeof ref, "\"sandboxId\":\"%s\",\"containerId\":\"%s\",\"execId\":\"%s\"", sandbox_id,
           container_id, exec_id);
  if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0) return 1;
  catch_signals();
  if (console_path) open_console();
  if (ready_fd >= 0) fcntl(ready_fd, F_SETFD, FD_CLOEXEC);

  long long reconnect_at = 0, leave_at = 0, execs_until = 0;
  if (connect_daemon() < 0) {
    ready("error: sandboxd does not answer\n");
    return 1;
  }
  for (;;) {
    long long t = now_ms();
    if (conn < 0 && t >= reconnect_at) {
      if (connect_daemon() < 0) reconnect_at = t + 250;
    }
    // The exit is known: give the output a moment to drain (both streams end), then leave with its code; an
    // exec started with --delete-exec is forgotten first (nobody else would: runc has no exec delete).
    if (exited >= 0 && (ends >= 2 || t - exited_at > 3000 || conn < 0)) {
      if (delete_exec && *exec_id && conn >= 0 && delete_id == 0) {
        delete_id = request("exec.delete", ref);
        leave_at = t + 1000;
      } else if (delete_id <= 0 || conn < 0 || t > leave_at) {
        // The container's keeper leaves after its execs' keepers, as a runc container's execs die with its init:
        // podman's cleanup of a container whose exec pid still answers refuses ("active exec sessions") and the
        // container would stay stopped, never exited. Bounded: an exec keeper that hangs does not hold us forever.
        if (!*exec_id) {
          if (!execs_until) execs_until = t + 10000;
          if (t < execs_until && exec_keeper_left()) goto keep_on;
          if (t >= execs_until) logf_("an exec keeper is still there after 10 s: leaving anyway");
        }
        logf_("leaving with %d (output ends %d)", exited, ends);
        return exited;
      }
    }
  keep_on:
    send_op();
    if (tty_fd >= 0) send_resize();

    struct pollfd fds[3];
    int n = 0;
    fds[n++] = (struct pollfd){.fd = sig_pipe[0], .events = POLLIN};
    int ci = -1, ii = -1;
    if (conn >= 0) {
      ci = n;
      fds[n++] = (struct pollfd){.fd = conn, .events = POLLIN};
    }
    // Input waits while a resize is on its way: the daemon may run two requests in either order, and what is
    // typed after a resize must see the new size.
    if (stdin_open && !op_line && following && exited < 0 && !resize_id && !(resize_wanted && tty_fd >= 0)) {
      ii = n;
      fds[n++] = (struct pollfd){.fd = in_fd, .events = POLLIN};
    }
    int timeout = 1000;
    if (conn < 0) timeout = 250;
    if (op_retry_at || resize_retry_at || exited >= 0) timeout = 100;
    if (poll(fds, (nfds_t)n, timeout) < 0 && errno != EINTR) return 1;

    if (fds[0].revents & POLLIN) {
      unsigned char sigs[64];
      ssize_t k = read(sig_pipe[0], sigs, sizeof sigs);
      for (ssize_t j = 0; j < k; j++) {
        if (sigs[j] == SIGWINCH && tty_fd >= 0) resize_wanted = 1;
        else forward_signal(sigs[j]);
      }
      // A resize goes out before the input read in this same turn: what is typed after it sees the new size.
      if (tty_fd >= 0) send_resize();
    }
    if (ci >= 0 && fds[ci].revents & (POLLIN | POLLHUP | POLLERR)) read_conn();
    if (ii >= 0 && fds[ii].revents & (POLLIN | POLLHUP | POLLERR)) read_stdin();
  }
}
