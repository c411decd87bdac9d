#!/usr/bin/env bash
# bench/density.sh: many running VSMs on one CHSM (docs/PERFORMANCE.md,
# "Density"). One CHSM on loopback (tests/integration/lib.sh) initialised
# with room for them (--max-vsms), a platform key enrolled; bench_density
# creates and starts BENCH_VSMS VSMs (default 256) and prints its table.
#
# usage: CHSM_BIN=build/bin bench/density.sh   (or bench/run.sh density [BUILD_DIR])
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
: "${CHSM_BIN:?set CHSM_BIN to the folder with chsmd and bench_density}"
export CHSM_BIN
. "$HERE/../tests/integration/lib.sh"
LOG=$IT_DIR/bench.log
COUNT=${BENCH_VSMS:-256}
bench_cleanup() {
  chsm_stop_all
  if [ "$IT_FAIL" -ne 0 ]; then
    mkdir -p /tmp/bench-density-logs
    cp "$LOG" "${CHSMD_LOG:-/dev/null}" /tmp/bench-density-logs/ 2>/dev/null
    echo "logs: /tmp/bench-density-logs" >&2
  fi
  it_cleanup
}
trap bench_cleanup EXIT

exec 3>&1 1>>"$LOG" 2>&1
chsm_init --max-vsms $((COUNT > 256 ? COUNT : 256))
chsm_start
enroll_platform
"$CHSM_BIN/bench_density" --url "$BASE" --key "$SIGN_KEY" --ca "$CACERT" \
  --server-pid "$CHSMD_PID" --count "$COUNT" --port "$(free_port)" > "$IT_DIR/table" ||
  { IT_FAIL=1; cat "$IT_DIR/table" >&3; echo "bench/density.sh: bench_density failed (see the log)" >&2; exit 1; }
cp "$CHSMD_LOG" /tmp/bench-density-last.log 2>/dev/null
exec 1>&3
cat "$IT_DIR/table"
echo "(file descriptors of chsmd: $(ls /proc/$CHSMD_PID/fd 2>/dev/null | wc -l); limit $(ulimit -n); load average $(cut -d' ' -f1-3 /proc/loadavg))"
