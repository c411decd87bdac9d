#!/usr/bin/env bash
# Runs the libFuzzer harnesses of tests/fuzz for longer than CI does.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Builds them with clang into ./build-fuzz (or $FUZZ_BUILD_DIR), makes the
# generated seeds, then runs each TARGET (default: all of them: http_frame
# auth api vsmp vsm_session image pkg sdf_config) for SECONDS (default 600)
# one after the other. New corpus inputs stay in
# build-fuzz/tests/fuzz/work/TARGET/corpus; findings (crash-*, leak-*,
# timeout-*, oom-*) are kept in build-fuzz/tests/fuzz/work/TARGET/crashes
# and listed at the end. Exit 1 when any target found something.
# A finding is fixed in the source and its input committed to
# tests/fuzz/regress/TARGET/, which every build replays (fuzz_replay_TARGET).
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-600}
shift || true
B=${FUZZ_BUILD_DIR:-build-fuzz}
CC=clang cmake -S . -B "$B" -DOPENCHSM_FUZZ=ON -DOPENCHSM_TESTS=OFF -DOPENCHSM_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 1
cmake --build "$B" --target fuzz_all -j"$(nproc)" || exit 1
F=$B/tests/fuzz
"$F/fuzz_make_seeds" "$F/seeds" || exit 1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(http_frame auth api vsmp vsm_session image pkg sdf_config)
rc=0
for t in "${targets[@]}"; do
  dirs=("tests/fuzz/corpus/$t")
  [ -d "tests/fuzz/regress/$t" ] && dirs+=("tests/fuzz/regress/$t")
  echo "== fuzz_$t for ${SECONDS_EACH}s"
  bash tests/fuzz/run_one.sh "$F/fuzz_$t" "$SECONDS_EACH" "$F/work/$t" "$F/seeds/$t" "${dirs[@]}" \
    2>&1 | grep -E '^(#[0-9]+ *DONE|==[0-9]+==|SUMMARY|stat::|artifact_prefix|Test unit written)' || true
  found=$(find "$F/work/$t/crashes" -type f 2>/dev/null)
  if [ -n "$found" ]; then
    rc=1; echo "fuzz_$t findings:"; printf '  %s\n' $found
  fi
done
exit $rc
