#!/usr/bin/env bash
# bench/run.sh BENCH [BUILD_DIR]: runs one benchmark against a build
# (default ./build). Benchmarks: drift (bench/drift.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-}
build=${2:-build}
[ -x "$build/bin/chsmd" ] || { echo "no $build/bin/chsmd: build first (scripts/build.sh)" >&2; exit 2; }
export CHSM_BIN=$PWD/$build/bin
case $bench in
  drift) exec bash bench/drift.sh ;;
  *) echo "usage: bench/run.sh drift [BUILD_DIR]" >&2; exit 2 ;;
esac
