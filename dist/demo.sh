#!/usr/bin/env bash
# make demo: build, serve the sample catalog on loopback, install into a temp root, check
# again (304), show status. Needs only Go.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say "building bin/ota-agent, bin/ota-testserver, bin/ota-release"
mkdir -p bin
CGO_ENABLED=0 go build -trimpath -o bin/ ./cmd/ota-testserver ./cmd/ota-release
CGO_ENABLED=0 go build -trimpath -tags nethttpomithttp2 -gcflags 'github.com/ota-agent/ota-agent/...=-l' -o bin/ ./cmd/ota-agent # as the Makefile builds it
W=$(mktemp -d /tmp/ota-demo.XXXXXX)
TS=""
cleanup() { [ -n "$TS" ] && kill "$TS" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

say "release key and the sample catalog of protocol.md 1.1 (nine rows, 1 MiB each, signed)"
bin/ota-release keygen --out "$W/release"
bin/ota-testserver sample --out "$W/catalog" --size 1048576 --seed 1 --sign-key "$W/release.pem"

say "starting ota-testserver (fake CloudFront edge + AppRunner origin + firmware CDN) on loopback"
bin/ota-testserver serve --listen 127.0.0.1:0 --catalog "$W/catalog" >"$W/ts.out" 2>"$W/ts.err" &
TS=$!
for _ in $(seq 50); do grep -q '^endpoint' "$W/ts.out" 2>/dev/null && break; sleep 0.1; done
cat "$W/ts.out"
URL=$(awk '/^endpoint/ {print $2}' "$W/ts.out")

mkdir -p "$W/root/etc/ota-agent/keys"
cp "$W/release.pub.pem" "$W/root/etc/ota-agent/keys/"
cat >"$W/root/etc/ota-agent/config.yaml" <<EOY
server:
  url: $URL
device:
  cpu_arch: armv8
  attributes: {gamer: prod, cellular: prod}
trust:
  keys: [/etc/ota-agent/keys/release.pub.pem]
EOY
A=(bin/ota-agent --root "$W/root")
say "first check: installs into slot a of $W/root/var/lib/ota-agent"
"${A[@]}" check --once
say "second check: the same facts and installed MD5s -> 304, nothing downloaded"
"${A[@]}" check --once
say "status"
"${A[@]}" status
say "verify: re-hash the active slot against the database"
"${A[@]}" verify
say "the slot on disk"
ls -l "$W/root/var/lib/ota-agent" "$W/root/var/lib/ota-agent/current/"
say "edge counters"
curl -s "${URL%/package}/_stats" 2>/dev/null || true
echo
say "demo done"
