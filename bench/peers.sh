#!/usr/bin/env bash
# make bench-peers: ota-agent beside Mender, SWUpdate and RAUC (their Debian 12 packages) doing
# the same jobs on this machine, on loopback; writes bench/peers.md. Installs the peers: run as
# root on a machine you can throw away (it also writes /etc/mender/artifact_info and mender's
# identity script when they are missing, as a device would have them). The OS-image row builds
# an arm64 rootfs with the peers' packages (dist/image/mkrootfs.sh, cached in $OTA_SYSTEM_BUILD)
# and boots it under qemu-system (systemtest TestPeersOS).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "bench-peers: run as root (it installs the peers' Debian packages)" >&2; exit 1; fi
need=(mender-client mender-artifact rauc swupdate strace cpio time openssl squashfs-tools)
missing=()
for p in "${need[@]}"; do dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
foreign=$(dpkg --print-foreign-architectures)
for a in arm64 armhf; do grep -qx "$a" <<<"$foreign" || dpkg --add-architecture "$a"; done
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; fi
exec go run ./bench -peers "$@"
