// sandboxd-qemu-reaper STATUS_FILE PROGRAM ARGS...
//
// A daemonized QEMU is nobody's child but init's, so when it dies nobody learns how: killed by signal 9 and a
// crash look alike to a daemon that only sees the pid vanish. This tiny parent keeps that fact. It runs
// PROGRAM (QEMU with -daemonize, or nsenter execing it) as a child subreaper, so the daemonized QEMU is
// re-parented to it, and it waits for it, then writes "exit N" or "signal N" to STATUS_FILE (via a temp file
// and a rename: a reader never sees half a line). It outlives sandboxd (a kill -9 of the daemon leaves it and
// QEMU running), costs about 100 KiB, and exits with QEMU.
//
// The process sandboxd spawns exits with the first QEMU process's status (0 once the VM is set up, as QEMU's
// own -daemonize parent does), so the caller's readiness wait is unchanged; the waiting half lives on in the
// background, its stdio on /dev/null so it holds none of the caller's pipes.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int status_code(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 255;
}

static void write_status(const char *path, int st) {
  char tmp[4096];
  char line[64];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return;
  int len = WIFSIGNALED(st) ? snprintf(line, sizeof line, "signal %d\n", WTERMSIG(st))
                            : snprintf(line, sizeof line, "exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 255);
  // The state dir may be gone already (the VM was destroyed): then there is nobody to tell.
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  ssize_t n = write(fd, line, (size_t)len);
  close(fd);
  if (n == len) rename(tmp, path);
  else unlink(tmp);
}

static void quiet_stdio(void) {
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return;
  for (int fd = 0; fd < 3; fd++) dup2(null, fd);
  if (null > 2) close(null);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s STATUS_FILE PROGRAM [ARGS...]\n", argv[0]);
    return 2;
  }
  const char *status_path = argv[1];
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) < 0) {
    perror("pipe2");
    return 127;
  }
  pid_t waiter = fork();
  if (waiter < 0) {
    perror("fork");
    return 127;
  }
  if (waiter > 0) {
    // The caller's process: exit as the first QEMU process did.
    close(ready[1]);
    unsigned char code = 127;
    ssize_t n;
    do n = read(ready[0], &code, 1);
    while (n < 0 && errno == EINTR);
    return n == 1 ? code : 127;
  }
  close(ready[0]);
  // The caller may be gone when we report (killed at its launch deadline): a write must not kill us.
  signal(SIGPIPE, SIG_IGN);
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
    perror("prctl(PR_SET_CHILD_SUBREAPER)");
    unsigned char code = 127;
    if (write(ready[1], &code, 1) < 0) return 127;
    return 127;
  }
  pid_t first = fork();
  if (first < 0) {
    perror("fork");
    return 127;
  }
  if (first == 0) {
    execvp(argv[2], argv + 2);
    fprintf(stderr, "%s: exec %s: %s\n", argv[0], argv[2], strerror(errno));
    _exit(127);
  }
  // From here on this process only waits: its command line (QEMU's, with the VM's paths) is wiped so that
  // whoever looks for processes naming a VM's dir finds QEMU itself, not its parent too.
  char *status_copy = strdup(status_path);
  if (status_copy == NULL) return 127;
  status_path = status_copy;
  char *args_end = argv[argc - 1] + strlen(argv[argc - 1]);
  memset(argv[1], 0, (size_t)(args_end - argv[1]));
  int st = 0;
  while (waitpid(first, &st, 0) < 0 && errno == EINTR) {
  }
  unsigned char code = (unsigned char)status_code(st);
  if (write(ready[1], &code, 1) < 0) {
    // Nobody waits for the launch any more; QEMU (if it came up) is ended by the caller's cleanup.
  }
  close(ready[1]);
  quiet_stdio();
  // The daemonized QEMU (and its short-lived middle process) are ours now: the last to end is QEMU.
  int last = -1;
  for (;;) {
    int s = 0;
    pid_t p = waitpid(-1, &s, 0);
    if (p < 0) {
      if (errno == EINTR) continue;
      break;
    }
    last = s;
  }
  if (code == 0 && last != -1) write_status(status_path, last);
  return 0;
}
