#!/usr/bin/env bash
# The main job: sandboxd on its defaults, a real container in a real sandbox (QEMU VM), then that sandbox's event history.
# Idempotent: reuses a running daemon (and leaves it running), otherwise starts one and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  # The defaults (/var/lib/sandboxd, /run/sandboxd) belong to root.
  exec sudo -E bash "$0" "$@"
fi

SOCKET="${SANDBOXD_SOCKET:-/run/sandboxd/sandboxd.sock}"
STATE_DIR="${SANDBOXD_STATE_DIR:-/var/lib/sandboxd}"
LOG="${SANDBOXD_DEMO_LOG:-/var/log/sandboxd-demo.log}"
BUNDLE="${SANDBOXD_DEMO_BUNDLE:-/var/tmp/sandboxd-demo-bundle}"
ctl() { node dist/src/cli/main.js --socket "$SOCKET" "$@"; }

[ -f dist/src/daemon/main.js ] || npm run build --silent

started_pid=""
stop_daemon() {
  if [ -n "$started_pid" ] && kill -0 "$started_pid" 2>/dev/null; then
    echo "demo: stopping the sandboxd we started (pid $started_pid)"
    kill -TERM "$started_pid"
    for _ in $(seq 1 300); do kill -0 "$started_pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
trap stop_daemon EXIT

if ctl info >/dev/null 2>&1; then
  echo "demo: reusing the sandboxd already serving $SOCKET"
else
  echo "demo: starting sandboxd (state $STATE_DIR, socket $SOCKET, log $LOG)"
  mkdir -p "$(dirname "$LOG")"
  nohup node dist/src/daemon/main.js --state-dir "$STATE_DIR" --socket "$SOCKET" >>"$LOG" 2>&1 &
  started_pid=$!
  for _ in $(seq 1 600); do
    if [ -S "$SOCKET" ] && ctl info >/dev/null 2>&1; then break; fi
    if ! kill -0 "$started_pid" 2>/dev/null; then
      echo "demo: sandboxd exited; last log lines:" >&2
      tail -n 20 "$LOG" >&2
      exit 1
    fi
    sleep 0.1
  done
  ctl info >/dev/null
fi
ctl info

echo "demo: building a busybox bundle in $BUNDLE"
rm -rf "$BUNDLE"
ctl bundle "$BUNDLE" >/dev/null

ID="demo-$(date +%s)"
echo "demo: sandboxctl run --rm --name $ID $BUNDLE -- sh -c '…'"
set +e
ctl run --rm --name "$ID" "$BUNDLE" -- sh -c \
  'echo "hello from a container in sandbox $(hostname)"; echo "guest kernel: $(uname -r)"; echo "cgroup: $(cat /proc/self/cgroup)"'
code=$?
set -e
echo "demo: the container exited with $code"

echo "demo: the sandbox's history (sandboxctl events ls --stream sandbox-$ID)"
ctl events ls --stream "sandbox-$ID"
exit "$code"
