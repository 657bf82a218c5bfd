#!/bin/sh
# sandboxd guest init (PID 1): mounts the guest, moves to a real root, starts the agent, powers off when it is done.
#
# ============================ GUEST CONTRACT (read by the agent and hypervisor code) ============================
# Devices the host gives the VM:
#   virtio-blk, serial `sbxroot`: the guest root of the image as an erofs image (read-only; node, crun, busybox,
#                             libs, agent). An image without one gives the root dir as the 9p mount tag `sbxroot`.
#   9p  mount tag `sbxshared` : the sandbox's own share (read-write), trans=virtio,version=9p2000.L.
#   virtio-serial port named `agent.channel.0` : the agent channel (found via /sys/class/virtio-ports/*/name).
#   virtio-serial port named `agent.output.0`  : optional, process output from the agent to the host (frames).
# Kernel command line keys (besides console=ttyS0 quiet panic=-1):
#   sandboxd.hostname=NAME   hostname of the guest (default: sandbox)
#   sandboxd.selftest=1      run the self-check instead of the agent, print it between the markers
#                            "=== sandboxd selftest begin ===" / "=== sandboxd selftest end ===", power off
#   sandboxd.selftest=wait   the same, then wait for the ACPI power button instead of powering off
#   sandboxd.loglevel=LEVEL  passed to the agent as SANDBOXD_LOG_LEVEL (default: info)
#   sandboxd.debug=1         the init traces its commands (set -x) on the console
#   sandboxd.share=defer     do not mount `sbxshared` at boot (a template: QEMU cannot migrate a VM with a 9p export
#                            mounted); the host has the agent mount it (CreateSandbox storages) after a restore
# Guest filesystem after init (the initramfs is gone: the root is a tmpfs, so pivot_root works for crun):
#   /                    tmpfs (writable: /etc/resolv.conf, /etc/hosts, /etc/hostname may be rewritten)
#   /usr, /opt           bind mounts of the read-only `sbxroot` root (also visible at /.sbxroot)
#   /bin /sbin /lib /lib64  symlinks to usr/bin usr/sbin usr/lib usr/lib64
#   /usr/bin/node, /usr/bin/crun, /usr/bin/busybox (+ applet links: sh, ps, ip, ...)
#   /opt/sandboxd/agent.mjs, /opt/sandboxd/agent.proto, /opt/sandboxd/image.json (version)
#   /proc, /sys, /dev (devtmpfs), /dev/pts (newinstance, ptmxmode=0666, /dev/ptmx -> pts/ptmx), /dev/shm (tmpfs)
#   /run, /tmp           tmpfs
#   /run/sandboxd/shared the `sbxshared` share (read-write); an empty dir until CreateSandbox with sandboxd.share=defer
#   /sys/fs/cgroup       cgroup2; cgroup.subtree_control = cpu io memory pids at the root and in /sandboxd
#   /sys/fs/cgroup/agent     leaf cgroup the agent runs in
#   /sys/fs/cgroup/sandboxd  parent for containers: crun cgroupsPath "/sandboxd/<id>"
#   lo is up; no other network is configured.
# The agent: `node /opt/sandboxd/agent.mjs`, cwd /, stdout+stderr to the console (ttyS0), with env
#   SANDBOXD_AGENT_PORT=/dev/vportNpM   the agent channel (open it once: a second open is EBUSY)
#   SANDBOXD_OUTPUT_PORT=/dev/vportNpM  the output port, or empty when the VM has none
#   SANDBOXD_AGENT_PROTO=/opt/sandboxd/agent.proto
#   SANDBOXD_SHARED=/run/sandboxd/shared
#   SANDBOXD_LOG_LEVEL=info
#   SANDBOXD_IMAGE_VERSION=<image version>
#   PATH=/usr/sbin:/usr/bin:/sbin:/bin  (crun is /usr/bin/crun)
# Agent lifecycle: exit 0 -> power off. Non-zero exit -> restarted after 1 s; more than 5 restarts in a row
#   that each lived < 30 s -> power off. No agent in the image -> "sandboxd-init: no agent", power off.
# ACPI power button (QMP system_powerdown): SIGTERM to every process of the agent cgroup, up to 3 s for them to
#   exit, then power off (the agent is not restarted once this began).
# PID 1 (this script, busybox ash) reaps orphans while it waits for the agent. Power off is `poweroff -f`.
# ==============================================================================================================
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
umask 022

log() { echo "sandboxd-init: $*"; }

halt_now() {
  log "$*; powering off"
  sync
  poweroff -f
  # poweroff -f does not return; if it somehow does, PID 1 must never exit (that panics the kernel).
  while :; do sleep 3600; done
}

# The guest root: the erofs disk whose virtio-blk serial is sbxroot (it migrates), else the 9p share sbxroot
# (an image without a root image). Both are read-only and immutable per image version, so caching is safe.
mount_guest_root() {
  for serial in /sys/block/vd*/serial; do
    [ -f "$serial" ] || continue
    [ "$(cat "$serial")" = sbxroot ] || continue
    disk=${serial%/serial}
    dev=/dev/${disk##*/}
    [ -b "$dev" ] || return 1
    mount -t erofs -o ro "$dev" /newroot/.sbxroot && return 0
    return 1
  done
  for tag in /sys/bus/virtio/drivers/9pnet_virtio/virtio*/mount_tag; do
    [ -f "$tag" ] || continue
    [ "$(tr -d '\000' <"$tag")" = sbxroot ] || continue
    mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144,cache=loose sbxroot /newroot/.sbxroot && return 0
  done
  return 1
}

# ---------- stage 1: in the initramfs ----------
stage1() {
  mount -t proc -o nosuid,nodev,noexec proc /proc
  mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
  mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
  grep -q 'sandboxd.debug=1' /proc/cmdline && set -x

  for m in $(cat /etc/sandboxd/modules); do
    if [ -f "/lib/modules/$m.ko" ]; then
      insmod "/lib/modules/$m.ko" || log "insmod $m failed"
    fi
  done

  mkdir -p /newroot
  mount -t tmpfs -o mode=0755 rootfs /newroot || halt_now "cannot mount the tmpfs root"
  mkdir -p /newroot/.sbxroot
  tries=0
  until mount_guest_root; do
    tries=$((tries + 1))
    [ "$tries" -ge 50 ] && halt_now "cannot mount the guest root (virtio-blk serial sbxroot, or 9p tag sbxroot)"
    sleep 0.1
  done

  cd /newroot || halt_now "no /newroot"
  mkdir -p proc sys dev run tmp etc root var/tmp var/log usr opt
  chmod 1777 tmp var/tmp
  chmod 0700 root
  mount --bind .sbxroot/usr usr || halt_now "cannot bind /usr"
  [ -d .sbxroot/opt ] && mount --bind .sbxroot/opt opt
  ln -s usr/bin bin
  ln -s usr/sbin sbin
  ln -s usr/lib lib
  ln -s usr/lib64 lib64
  ln -s ../run var/run
  cp /init /newroot/init
  chmod 0755 /newroot/init
  cd /

  mount --move /proc /newroot/proc
  mount --move /sys /newroot/sys
  mount --move /dev /newroot/dev
  exec switch_root /newroot /init stage2
  halt_now "switch_root failed"
}

# ---------- stage 2: in the real (tmpfs) root ----------
# The device of the virtio-serial port named $1, waiting up to $2 tenths of a second for it to appear.
find_port() {
  tries=0
  while :; do
    for f in /sys/class/virtio-ports/*/name; do
      [ -f "$f" ] || continue
      if [ "$(cat "$f")" = "$1" ]; then
        d=${f%/name}
        dev=/dev/${d##*/}
        if [ -c "$dev" ]; then
          echo "$dev"
          return 0
        fi
      fi
    done
    tries=$((tries + 1))
    [ "$tries" -lt "$2" ] || return 1
    sleep 0.1
  done
}

# Reads one input event from each "Power Button" device in the background; the first press shuts down.
watch_power_button() {
  for input in /sys/class/input/input*; do
    [ "$(cat "$input/name" 2>/dev/null)" = "Power Button" ] || continue
    for event in "$input"/event*; do
      [ -e "$event" ] || continue
      dev=/dev/input/${event##*/}
      [ -c "$dev" ] || continue
      (
        dd if="$dev" of=/dev/null bs=24 count=1 2>/dev/null || exit 0
        [ -e /run/sandboxd/.poweroff ] && exit 0
        : >/run/sandboxd/.poweroff
        log "power button: stopping the agent"
        pids=$(cat /sys/fs/cgroup/agent/cgroup.procs 2>/dev/null)
        [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
        waited=0
        while [ "$waited" -lt 30 ] && [ -n "$(cat /sys/fs/cgroup/agent/cgroup.procs 2>/dev/null)" ]; do
          sleep 0.1
          waited=$((waited + 1))
        done
        halt_now "power button"
      ) &
    done
  done
}

selftest() {
  echo "=== sandboxd selftest begin ==="
  echo "image.version: $IMAGE_VERSION"
  echo "uptime: $(cut -d' ' -f1 /proc/uptime)"
  echo "cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
  echo "cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
  echo "hostname: $(hostname)"
  echo "agent.port: ${AGENT_PORT:-none}"
  echo "shared: $(grep -c ' /run/sandboxd/shared 9p ' /proc/mounts)"
  echo "crun.version: $(crun --version 2>&1 | head -n 1)"
  echo "node.version: $(node -e 'process.stdout.write(process.version)' 2>&1)"
  bundle=/run/sandboxd/shared/selftest-bundle
  if [ -f "$bundle/config.json" ]; then
    echo "container.output.begin"
    crun run --bundle "$bundle" sandboxd-selftest </dev/null 2>&1
    rc=$?
    echo "container.output.end"
    echo "container.exit: $rc"
    crun delete -f sandboxd-selftest >/dev/null 2>&1
  else
    echo "container.exit: no bundle"
  fi
  echo "uptime: $(cut -d' ' -f1 /proc/uptime)"
  echo "=== sandboxd selftest end ==="
}

run_agent() {
  [ -f /opt/sandboxd/agent.mjs ] || halt_now "no agent"
  [ -n "$AGENT_PORT" ] || halt_now "no agent port (virtio-serial port agent.channel.0 not found)"
  export SANDBOXD_AGENT_PORT="$AGENT_PORT"
  export SANDBOXD_OUTPUT_PORT="$OUTPUT_PORT"
  export SANDBOXD_AGENT_PROTO=/opt/sandboxd/agent.proto
  export SANDBOXD_SHARED=/run/sandboxd/shared
  export SANDBOXD_LOG_LEVEL="$LOG_LEVEL"
  export SANDBOXD_IMAGE_VERSION="$IMAGE_VERSION"
  quick_failures=0
  while :; do
    started=$(cut -d. -f1 /proc/uptime)
    log "starting agent on $AGENT_PORT"
    # The agent moves itself into the leaf cgroup before exec, so the root's controllers can be delegated.
    sh -c 'echo $$ > /sys/fs/cgroup/agent/cgroup.procs; cd /; exec node /opt/sandboxd/agent.mjs' </dev/null
    rc=$?
    if [ -e /run/sandboxd/.poweroff ]; then
      # The power button handler owns the shutdown now; PID 1 must stay alive until it powers off.
      while :; do sleep 3600; done
    fi
    [ "$rc" -eq 0 ] && halt_now "agent exited 0"
    lived=$(($(cut -d. -f1 /proc/uptime) - started))
    if [ "$lived" -ge 30 ]; then quick_failures=0; fi
    quick_failures=$((quick_failures + 1))
    [ "$quick_failures" -gt 5 ] && halt_now "agent failed $quick_failures times in a row (last exit $rc)"
    log "agent exited $rc after ${lived}s; restart $quick_failures of 5"
    sleep 1
  done
}

stage2() {
  grep -q 'sandboxd.debug=1' /proc/cmdline && set -x
  HOSTNAME_ARG=sandbox
  SELFTEST=0
  LOG_LEVEL=info
  SHARE=boot
  for arg in $(cat /proc/cmdline); do
    case "$arg" in
      sandboxd.hostname=*) HOSTNAME_ARG=${arg#sandboxd.hostname=} ;;
      sandboxd.selftest=1) SELFTEST=1 ;;
      sandboxd.selftest=wait) SELFTEST=wait ;;
      sandboxd.loglevel=*) LOG_LEVEL=${arg#sandboxd.loglevel=} ;;
      sandboxd.share=defer) SHARE=defer ;;
    esac
  done
  IMAGE_VERSION=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' /opt/sandboxd/image.json 2>/dev/null)

  mkdir -p /dev/pts /dev/shm
  mount -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
  rm -f /dev/ptmx
  ln -s pts/ptmx /dev/ptmx
  mount -t tmpfs -o nosuid,nodev,mode=1777 shm /dev/shm
  mount -t tmpfs -o nosuid,nodev,mode=0755 run /run
  mount -t tmpfs -o nosuid,nodev,mode=1777 tmp /tmp
  [ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
  [ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
  [ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
  [ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr

  mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup || log "cannot mount cgroup2"
  echo "+cpu +memory +pids +io" >/sys/fs/cgroup/cgroup.subtree_control || log "cannot enable cgroup controllers"
  mkdir -p /sys/fs/cgroup/agent /sys/fs/cgroup/sandboxd
  echo "+cpu +memory +pids +io" >/sys/fs/cgroup/sandboxd/cgroup.subtree_control ||
    log "cannot enable cgroup controllers in /sandboxd"

  mkdir -p /run/sandboxd/shared /run/crun
  if [ "$SHARE" = defer ]; then
    log "sandbox share deferred: mounted when the host creates the sandbox"
  else
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 sbxshared /run/sandboxd/shared ||
      log "no sandbox share (9p tag sbxshared)"
  fi

  hostname "$HOSTNAME_ARG"
  echo "$HOSTNAME_ARG" >/etc/hostname
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n' "$HOSTNAME_ARG" >/etc/hosts
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >/etc/passwd
  printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >/etc/group
  : >/etc/resolv.conf
  ip link set lo up 2>/dev/null

  AGENT_PORT=$(find_port agent.channel.0 50)
  # Ports are announced together: once the agent's is there, a VM with an output port has it too.
  OUTPUT_PORT=$(find_port agent.output.0 1)
  watch_power_button

  if [ "$SELFTEST" = 1 ]; then
    selftest
    halt_now "selftest done"
  elif [ "$SELFTEST" = wait ]; then
    selftest
    log "selftest done; waiting for the power button"
    while :; do sleep 3600; done
  fi
  run_agent
}

if [ "$1" = stage2 ]; then
  stage2
else
  stage1
fi
halt_now "init fell through"
