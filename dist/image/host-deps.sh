#!/bin/sh
# Installs what building and booting the A/B ARM images needs on a Debian host (as root), and
# makes foreign binaries run (binfmt_misc mounted, qemu-user handlers enabled).
set -eu
pkgs="qemu-system-arm qemu-utils qemu-efi-aarch64 grub-common qemu-user-static binfmt-support arch-test mmdebstrap u-boot-qemu u-boot-tools
  libubootenv-tool mtools dosfstools fdisk e2fsprogs"
missing=
for p in $pkgs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "host-deps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || { sleep 20; apt-get update -qq; } || echo "host-deps: apt-get update failed twice; using the package lists there are"
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
for a in aarch64 arm; do
  [ -e /proc/sys/fs/binfmt_misc/qemu-$a ] || update-binfmts --enable qemu-$a >/dev/null 2>&1 || true
  [ -e /proc/sys/fs/binfmt_misc/qemu-$a ] || { echo "host-deps: qemu-$a binfmt handler is not registered" >&2; exit 1; }
done
