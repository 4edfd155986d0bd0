#!/bin/sh
# The host packages and the root filesystems make test-system boots: prepare.sh [ARCH...]
# (default arm64 armhf, built side by side). A rootfs is reused while dist/image/mkrootfs.sh
# is unchanged (its stamp in $OTA_SYSTEM_BUILD, default .system-build). .ci/run starts this
# beside make test, so the boards find their root filesystems ready.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "SKIPPED: test-system needs root (mmdebstrap, binfmt_misc)"; exit 0
fi
B=${OTA_SYSTEM_BUILD:-$(pwd)/.system-build}; mkdir -p "$B"; B=$(cd "$B" && pwd)
s=$(date +%s); ./dist/image/host-deps.sh; echo "system: host packages ready in $(( $(date +%s) - s ))s"
stamp=$(sha256sum dist/image/mkrootfs.sh | cut -c1-16)
rootfs() {
  rm -f "$B/rootfs-$1.failed"
  if [ "$(cat "$B/rootfs-$1.stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$B/rootfs-$1/sbin/init" ]; then
    echo "system: rootfs-$1 reused (mkrootfs.sh unchanged)"; return
  fi
  rm -f "$B/rootfs-$1.stamp"
  s=$(date +%s)
  if ./dist/image/mkrootfs.sh "$1" "$B/rootfs-$1" > "$B/mkrootfs-$1.log" 2>&1; then
    echo "$stamp" > "$B/rootfs-$1.stamp"
    echo "system: rootfs-$1 built in $(( $(date +%s) - s ))s"
  else
    tail -30 "$B/mkrootfs-$1.log" > "$B/rootfs-$1.failed"; cat "$B/rootfs-$1.failed"; return 1
  fi
}
[ $# -gt 0 ] || set -- arm64 armhf
pids=
for a in "$@"; do rootfs "$a" & pids="$pids $!"; done
rc=0
for p in $pids; do wait "$p" || rc=1; done
exit $rc
