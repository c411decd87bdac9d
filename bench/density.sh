#!/usr/bin/env bash
# bench/density.sh: many running VSMs on one CHSM (docs/PERFORMANCE.md,
# "Density"). One CHSM on loopback (tests/integration/lib.sh) initialised
# with room for them (--max-vsms), a platform key enrolled; bench_density
# creates and starts BENCH_VSMS VSMs (default 256) and prints its table.
#
# usage: CHSM_BIN=build/bin bench/density.sh   (or bench/run.sh density [BUILD_DIR])
set -uo pipefail
BENCH_NAME=density
. "$(dirname "$0")/lib.sh"
COUNT=${BENCH_VSMS:-256}

bench_quiet
chsm_init --max-vsms $((COUNT > 256 ? COUNT : 256))
chsm_start
enroll_platform
"$CHSM_BIN/bench_density" --url "$BASE" --key "$SIGN_KEY" --ca "$CACERT" \
  --server-pid "$(service_pid)" --count "$COUNT" --port "$(free_port)" > "$IT_DIR/table" ||
  { cat "$IT_DIR/table" >&3; die "bench_density failed (see the log)"; }
bench_loud
cat "$IT_DIR/table"
echo "(file descriptors of the chsmd service: $(ls /proc/$(service_pid)/fd 2>/dev/null | wc -l); limit $(ulimit -n); load average $(cut -d' ' -f1-3 /proc/loadavg))"
