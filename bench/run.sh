#!/usr/bin/env bash
# bench/run.sh BENCH [BUILD_DIR]: runs one benchmark against a build
# (default ./build) and prints its tables. Benchmarks: mgmt (bench/mgmt.sh),
# vsm (bench/vsm.sh), density (bench/density.sh), drift (bench/drift.sh),
# sm2 (bench_sm2). scripts/bench.sh runs them all and updates
# docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-}
build=${2:-build}
[ -x "$build/bin/chsmd" ] || { echo "no $build/bin/chsmd: build first (scripts/build.sh)" >&2; exit 2; }
export CHSM_BIN=$(cd "$build/bin" && pwd)
case $bench in
  mgmt|vsm|density|drift) exec bash "bench/$bench.sh" ;;
  sm2) exec "$CHSM_BIN/bench_sm2" "${BENCH_SM2_SECONDS:-2}" ;;
  *) echo "usage: bench/run.sh mgmt|vsm|density|drift|sm2 [BUILD_DIR]" >&2; exit 2 ;;
esac
