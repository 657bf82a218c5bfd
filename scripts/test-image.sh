#!/usr/bin/env bash
# Builds a test image offline (no registry) from Debian's busybox-static, as a docker-archive tar:
#   test-image.sh [busybox]  docker.io/library/busybox:latest      busybox and every applet, Cmd sh
#   test-image.sh pause      docker.io/sandboxd/pause:1            busybox and sleep only: CRI's sandbox_image,
#                                                                   a pause-like Entrypoint that sleeps forever
#   output: ${SANDBOXD_TEST_IMAGE_DIR:-/var/cache/sandboxd/test-images}/<kind>.tar   (stable: other tests use it)
# Load it with `ctr images import <tar>` or `podman load -i <tar>`. Prints the tar's path. Content-stable:
# rebuilt only when busybox-static (or this script's recipe) changes.
set -euo pipefail
kind=${1:-busybox}
case "$kind" in
  busybox) tag=docker.io/library/busybox:latest; recipe=1 ;;
  pause) tag=docker.io/sandboxd/pause:1; recipe=1 ;;
  *) echo "test-image: unknown kind '$kind' (busybox or pause)" >&2; exit 2 ;;
esac
out_dir=${SANDBOXD_TEST_IMAGE_DIR:-/var/cache/sandboxd/test-images}
tar_path=$out_dir/$kind.tar
bb=/bin/busybox
[ -x "$bb" ] || { echo "test-image: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
stamp=$(sha256sum "$bb" | cut -d' ' -f1)
# busybox.stamp keeps its old content (the busybox hash alone), so an existing busybox.tar is not rebuilt.
[ "$kind" = busybox ] || stamp="$stamp recipe $recipe"
if [ -f "$tar_path" ] && [ "$(cat "$out_dir/$kind.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$tar_path"; exit 0
fi
mkdir -p "$out_dir"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,root}
cp "$bb" "$root/bin/busybox"
if [ "$kind" = busybox ]; then
  for app in $("$bb" --list); do [ "$app" = busybox ] || ln -s busybox "$root/bin/$app"; done
  process='"Cmd":["sh"]'
else
  # The pod's pause process only has to outlive its containers: CRI stops it with SIGKILL.
  ln -s busybox "$root/bin/sleep"
  process='"Entrypoint":["/bin/sleep","infinity"]'
fi
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
chmod 1777 "$root/tmp"
layer=$work/layer.tar
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$layer" .
diff_id=$(sha256sum "$layer" | cut -d' ' -f1)
img=$work/img; mkdir -p "$img/$diff_id"
mv "$layer" "$img/$diff_id/layer.tar"
cat > "$img/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],$process},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created_by":"sandboxd scripts/test-image.sh"}]}
JSON
config_id=$(sha256sum "$img/config.json" | cut -d' ' -f1)
mv "$img/config.json" "$img/$config_id.json"
cat > "$img/manifest.json" <<JSON
[{"Config":"$config_id.json","RepoTags":["$tag"],"Layers":["$diff_id/layer.tar"]}]
JSON
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$img" -cf "$tar_path.tmp" .
mv "$tar_path.tmp" "$tar_path"
echo "$stamp" > "$out_dir/$kind.stamp"
echo "$tar_path"
