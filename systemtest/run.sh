#!/bin/sh
# make test-system: host packages, the arm64 rootfs (cached under $OTA_SYSTEM_BUILD while
# dist/image/mkrootfs.sh is unchanged), then the booted scenarios. Prints one line per
# scenario and a final figure line; the serial logs stay in $OTA_SYSTEM_BUILD/run-*/.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "SKIPPED: test-system needs root (mmdebstrap, binfmt_misc)"; exit 0
fi
B=${OTA_SYSTEM_BUILD:-$(pwd)/.system-build}; mkdir -p "$B"; export OTA_SYSTEM_BUILD=$B
t() { s=$(date +%s); "$@"; echo "system: step $* took $(( $(date +%s) - s ))s"; }
t ./dist/image/host-deps.sh
stamp=$(sha256sum dist/image/mkrootfs.sh | cut -c1-16)
rootfs() {
  if [ "$(cat "$B/rootfs-$1.stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$B/rootfs-$1/sbin/init" ]; then
    echo "system: rootfs-$1 reused (mkrootfs.sh unchanged)"; return
  fi
  ./dist/image/mkrootfs.sh "$1" "$B/rootfs-$1" > "$B/mkrootfs-$1.log" 2>&1 || { tail -30 "$B/mkrootfs-$1.log"; exit 1; }
  echo "$stamp" > "$B/rootfs-$1.stamp"
}
t rootfs arm64
go test -tags system -count=1 -v -timeout 80m -run 'TestSystem' ./systemtest 2>&1 | tee "$B/test-system.log" |
  grep -E --line-buffered '^(system:|--- |FAIL|ok|PASS|panic|\s+\S+_test.go)'
grep -q -- '^--- PASS' "$B/test-system.log" && ! grep -q -- '^--- FAIL' "$B/test-system.log"
