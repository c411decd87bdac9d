#!/usr/bin/env bash
# The test command: installs what is needed, builds, and runs every test.
#
# Stages (TEST_STAGES, default all three, in this order):
#   plain     ./build (or $BUILD_DIR): the whole suite (unit, integration,
#             and the daemon under Valgrind memcheck, label "valgrind")
#   asan      ./build-asan: the whole suite built with SANITIZE=1
#             (AddressSanitizer, LeakSanitizer, UBSan; no Valgrind tests)
#   fuzz      ./build-fuzz: the libFuzzer harnesses (clang), each for
#             FUZZ_SECONDS (default 20) over its corpora (ctest -L fuzz)
# Arguments are passed to each stage's ctest (e.g. -R smoke). Every stage
# runs; the command fails when any stage failed.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh || exit 1
stages=${TEST_STAGES:-plain asan fuzz}
rc=0
stage() { echo "=== test stage: $1 ($(date -u +%H:%M:%S))"; }
for s in $stages; do
  case $s in
    plain)
      stage plain
      if scripts/build.sh; then
        (cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j"$(nproc)" "$@") || rc=1
      else rc=1; fi ;;
    asan)
      stage asan
      if SANITIZE=1 BUILD_DIR=build-asan scripts/build.sh; then
        (cd build-asan && ctest --output-on-failure -j"$(nproc)" -LE valgrind "$@") || rc=1
      else rc=1; fi ;;
    fuzz)
      stage fuzz
      if CC=clang cmake -S . -B build-fuzz -DOPENCHSM_FUZZ=ON -DOPENCHSM_TESTS=OFF \
           -DOPENCHSM_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
           -DOPENCHSM_FUZZ_SECONDS="${FUZZ_SECONDS:-20}" >/dev/null &&
         cmake --build build-fuzz --target fuzz_all -j"$(nproc)"; then
        (cd build-fuzz && ctest --output-on-failure -j"$(nproc)" -L fuzz "$@") || rc=1
      else rc=1; fi ;;
    *) echo "test.sh: unknown stage $s" >&2; rc=1 ;;
  esac
done
stage done
exit $rc
