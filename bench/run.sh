#!/usr/bin/env bash
# make bench: every figure against a baseline measured in the same run; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./bench "$@"
