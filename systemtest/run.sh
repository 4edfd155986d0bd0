#!/bin/sh
# make test-system: host packages, the arm64 and armhf rootfs (cached under $OTA_SYSTEM_BUILD
# while dist/image/mkrootfs.sh is unchanged; the armhf one builds while the arm64 board runs),
# then the booted scenarios. One line per scenario, a final figure line; the serial logs stay
# in $OTA_SYSTEM_BUILD/run-*/.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "SKIPPED: test-system needs root (mmdebstrap, binfmt_misc)"; exit 0
fi
B=${OTA_SYSTEM_BUILD:-$(pwd)/.system-build}; mkdir -p "$B"; B=$(cd "$B" && pwd); export OTA_SYSTEM_BUILD=$B
start=$(date +%s)
# The arm64 rootfs first; the armhf one builds while the arm64 board runs (both are no-ops
# when .ci/run's prepare.sh built them beside make test).
./systemtest/prepare.sh arm64
./systemtest/prepare.sh armhf > "$B/prepare-armhf.log" 2>&1 &
rm -f "$B"/run-*/figure "$B"/run-*/cuts
set +e
go test -tags system -count=1 -v -parallel 3 -timeout 80m -run 'TestSystem' ./systemtest 2>&1 | tee "$B/test-system.log" |
  grep -E --line-buffered '^(system:|--- |FAIL|ok|PASS|panic|\s+\S+_test.go)'
wait; cat "$B/prepare-armhf.log"
set -e
fig() { if [ -f "$B/run-$1/figure" ]; then tr -d '\n' < "$B/run-$1/figure"; else echo "not run"; fi; }
cuts=$(cat "$B"/run-*/cuts 2>/dev/null | awk '{w += $1; n += $2} END {printf "%d/%d", w, n}')
echo "system: arm64 $(fig arm64), armv7 $(fig armhf), grub $(fig grub), power cuts $cuts whole; $(( $(date +%s) - start ))s in all"
grep -q -- '^--- PASS' "$B/test-system.log" && ! grep -q -- '^--- FAIL' "$B/test-system.log"
