#!/bin/sh
# The version of a build, as `ota-agent version` prints it and the packages carry it: a tag
# vX.Y.Z is X.Y.Z, N commits after it X.Y.Z+N.g<hash>; without a tag 0.0+N.g<hash> (N: the
# commits so far, so later builds order after earlier ones); +dirty for a tree with changes;
# 0.0+dev outside git.
set -eu
cd "$(dirname "$0")/../.."
d=$(git describe --tags --long --match 'v[0-9]*' --dirty 2>/dev/null) || d=
if [ -n "$d" ]; then
  dirty=; case $d in *-dirty) dirty=+dirty; d=${d%-dirty} ;; esac
  hash=${d##*-}; rest=${d%-*}; n=${rest##*-}; tag=${rest%-*}; tag=${tag#v}
  if [ "$n" = 0 ]; then echo "$tag$dirty"; else echo "$tag+$n.$hash$dirty"; fi
  exit 0
fi
if n=$(git rev-list --count HEAD 2>/dev/null); then
  hash=g$(git rev-parse --short HEAD)
  dirty=; [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || dirty=+dirty
  echo "0.0+$n.$hash$dirty"
  exit 0
fi
echo 0.0+dev
