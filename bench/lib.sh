# bench/lib.sh: shared by the benchmark scripts that drive a CHSM
# (bench/mgmt.sh, vsm.sh, density.sh): tests/integration/lib.sh for the CHSM,
# plus a log and a cleanup that keeps the logs of a failed run.
#
# A script sources it with BENCH_NAME set, then calls bench_quiet to send
# its own output to $LOG until bench_loud (its table goes to stdout).
: "${CHSM_BIN:?set CHSM_BIN to the folder with chsmd and the bench programs}"
: "${BENCH_NAME:?set BENCH_NAME before sourcing bench/lib.sh}"
export CHSM_BIN
. "$(dirname "${BASH_SOURCE[0]}")/../tests/integration/lib.sh"
LOG=$IT_DIR/bench.log

bench_cleanup() {
  chsm_stop_all
  if [ "$IT_FAIL" -ne 0 ]; then
    mkdir -p "/tmp/bench-$BENCH_NAME-logs"
    cp "$LOG" "$IT_DIR"/*.json "${CHSMD_LOG:-/dev/null}" "/tmp/bench-$BENCH_NAME-logs/" 2>/dev/null
    echo "logs: /tmp/bench-$BENCH_NAME-logs" >&2
  fi
  it_cleanup
}
trap bench_cleanup EXIT

# die MESSAGE: the benchmark failed.
die() { echo "bench/$BENCH_NAME.sh: $*" >&2; IT_FAIL=1; exit 1; }
bench_quiet() { exec 3>&1 1>>"$LOG" 2>&1; }
bench_loud() { exec 1>&3; }
