/* sbx-console: receives a container's pty master from crun's --console-socket (SCM_RIGHTS, which Node cannot do) and
 * relays it to the guest agent over plain pipes.
 *
 *   sbx-console <console-socket-path>
 *
 * fd 0: bytes for the terminal (EOF sends the terminal's EOF character, ^D, as a keyboard would).
 * fd 1: everything the terminal prints.
 * fd 2: "ready\n" once the socket listens (crun may connect from then on), then error messages.
 * fd 3: window sizes, one "rows cols\n" line each, applied with TIOCSWINSZ.
 * Exits 0 when the terminal is gone (all slave fds closed), 1 on error. Built static at image build time. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

static void die(const char *what) {
  dprintf(2, "sbx-console: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        poll(&p, 1, -1);
        continue;
      }
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static int receive_master(int listener) {
  int conn;
  do conn = accept(listener, NULL, NULL);
  while (conn < 0 && errno == EINTR);
  if (conn < 0) die("accept");
  char data[256];
  char control[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  ssize_t n;
  do n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) die("recvmsg");
  struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
  if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) {
    errno = EPROTO;
    die("no pty fd from the console socket");
  }
  int master;
  memcpy(&master, CMSG_DATA(cmsg), sizeof master);
  close(conn);
  return master;
}

/* Applies every complete "rows cols" line in buf; keeps a partial line for the next read. */
static void apply_sizes(int master, char *buf, size_t *len) {
  size_t start = 0;
  for (size_t i = 0; i < *len; i++) {
    if (buf[i] != '\n') continue;
    buf[i] = '\0';
    unsigned rows = 0, cols = 0;
    if (sscanf(buf + start, "%u %u", &rows, &cols) == 2) {
      struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
      if (ioctl(master, TIOCSWINSZ, &ws) < 0) dprintf(2, "sbx-console: TIOCSWINSZ: %s\n", strerror(errno));
    }
    start = i + 1;
  }
  memmove(buf, buf + start, *len - start);
  *len -= start;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    dprintf(2, "usage: sbx-console <console-socket-path>\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(argv[1]) >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    die("socket path");
  }
  strcpy(addr.sun_path, argv[1]);
  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) die("socket");
  unlink(argv[1]);
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  if (listen(listener, 1) < 0) die("listen");
  if (write_all(2, "ready\n", 6) < 0) die("write ready");
  int master = receive_master(listener);
  close(listener);
  unlink(argv[1]);

  char buf[65536];
  char sizes[256];
  size_t sizes_len = 0;
  int stdin_open = 1, control_open = 1;
  for (;;) {
    struct pollfd fds[3] = {
        {.fd = master, .events = POLLIN},
        {.fd = stdin_open ? 0 : -1, .events = POLLIN},
        {.fd = control_open ? 3 : -1, .events = POLLIN},
    };
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[2].revents) {
      ssize_t n = read(3, sizes + sizes_len, sizeof sizes - sizes_len);
      if (n <= 0) control_open = 0;
      else {
        sizes_len += (size_t)n;
        apply_sizes(master, sizes, &sizes_len);
        if (sizes_len == sizeof sizes) sizes_len = 0; /* a line that long is garbage */
      }
    }
    if (fds[1].revents) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n <= 0) {
        stdin_open = 0;
        struct termios t;
        char eof = tcgetattr(master, &t) == 0 ? (char)t.c_cc[VEOF] : 4;
        write_all(master, &eof, 1);
      } else if (write_all(master, buf, (size_t)n) < 0) {
        stdin_open = 0;
      }
    }
    if (fds[0].revents) {
      ssize_t n = read(master, buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      /* EIO: the last slave fd closed, the terminal's processes are gone. */
      if (n <= 0) return 0;
      if (write_all(1, buf, (size_t)n) < 0) return 0;
    }
  }
}
