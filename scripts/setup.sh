#!/usr/bin/env bash
# Sets up everything sandboxd needs on Debian 12, idempotently: apt packages, npm deps, build, guest image.
# Fast when already done: each step checks before it works.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(qemu-system-x86 busybox-static cpio crun socat xz-utils zstd kmod procps iproute2 ca-certificates gcc libc6-dev runc umoci python3 containerd golang-github-containerd-containerd-dev golang-github-containerd-cgroups-dev golang-github-gogo-protobuf-dev podman conmon erofs-utils containernetworking-plugins)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci only when the lockfile changed since the last install.
stamp=node_modules/.sandboxd-lock-hash
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

npm run build --silent

# sandboxd-runc's keeper (src/oci/keeper.c): static, rebuilt when its source is newer; the CLI on PATH.
keeper=dist/bin/sandboxd-runc-keeper
if [ ! -x "$keeper" ] || [ src/oci/keeper.c -nt "$keeper" ]; then
  echo "setup: compile $keeper"
  npm run build:keeper --silent
fi
# QEMU's parent that keeps its exit status (src/hypervisor/reaper.c): static, rebuilt when its source is newer.
reaper=dist/bin/sandboxd-qemu-reaper
if [ ! -x "$reaper" ] || [ src/hypervisor/reaper.c -nt "$reaper" ]; then
  echo "setup: compile $reaper"
  npm run build:reaper --silent
fi
chmod +x dist/src/oci/main.js
if [ -w /usr/local/bin ] && [ "$(readlink /usr/local/bin/sandboxd-runc 2>/dev/null)" != "$PWD/dist/src/oci/main.js" ]; then
  ln -sfn "$PWD/dist/src/oci/main.js" /usr/local/bin/sandboxd-runc
fi

# The guest image (kernel, initrd, guest root with node + agent + crun): content-hashed, rebuilt only on change.
node dist/src/image/main.js build

# containerd finds a shim on its PATH by the runtime's name (io.containerd.sandboxd.v1 → containerd-shim-sandboxd-v1).
shim_entry="$(pwd)/dist/src/shim/main.js"
chmod +x "$shim_entry"
if [ "$(readlink /usr/local/bin/containerd-shim-sandboxd-v1 2>/dev/null)" != "$shim_entry" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO ln -sfn "$shim_entry" /usr/local/bin/containerd-shim-sandboxd-v1
fi
