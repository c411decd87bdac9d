#!/usr/bin/env bash
# bench/mgmt.sh: the management API under load (docs/PERFORMANCE.md,
# "Management API").
#
# One CHSM on loopback (tests/integration/lib.sh), a platform key enrolled.
# chsm-load runs, over 32 keep-alive TLS connections with pre-signed
# requests:
#   1. signed GET /chsm/status, closed loop, measuring in the same run the
#      crypto bound: cores / (one SM2 verify + one SM2 sign);
#   2. the mixed load status=60,vsm-get=20,token=10,create-delete=10, closed
#      loop;
#   3. GET /chsm/status open loop at 70 % of the crypto bound, for p99 at
#      that rate (latency counts from each request's planned start, so a
#      server slower than that rate shows its queue).
# Each row: req/s, latency p50/p99, the service's CPU time per request
# (/proc/PID/stat), and that over the crypto cost.
#
# usage: CHSM_BIN=build/bin bench/mgmt.sh   (or bench/run.sh mgmt [BUILD_DIR])
# BENCH_SECONDS (default 10) sets the measured seconds of each run;
# BENCH_CHSMD_ARGS adds options to chsmd run (e.g. "--threads 4").
# On a machine with 2 CPUs or more, chsmd runs on the last CPU and chsm-load
# on the others (taskset), so that the client does not take the server's
# cores; the crypto bound counts the CPUs chsmd may use. BENCH_SERVER_CPUS
# and BENCH_CLIENT_CPUS (taskset lists) choose others; BENCH_PIN=0 pins
# nothing (both share every CPU, as before 2026-11-26 13:30 UTC).
# Prints the tables on stdout; the rest goes to $IT_DIR/bench.log.
set -uo pipefail
BENCH_NAME=mgmt
. "$(dirname "$0")/lib.sh"
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-32}

NCPU=$(nproc)
CLIENT_WRAP=()
if [ "${BENCH_PIN:-1}" != 0 ] && [ "$NCPU" -ge 2 ]; then
  SERVER_CPUS=${BENCH_SERVER_CPUS:-$((NCPU - 1))}
  CLIENT_CPUS=${BENCH_CLIENT_CPUS:-0}
  [ -n "${BENCH_CLIENT_CPUS:-}" ] || [ "$NCPU" -le 2 ] || CLIENT_CPUS=0-$((NCPU - 2))
  CHSMD_WRAP="taskset -c $SERVER_CPUS ${CHSMD_WRAP:-}"
  CLIENT_WRAP=(taskset -c "$CLIENT_CPUS")
  PINNING="chsmd on CPU $SERVER_CPUS, chsm-load on CPU $CLIENT_CPUS (taskset)"
else
  PINNING="not pinned: chsmd and chsm-load share the $NCPU CPUs"
fi

bench_quiet
chsm_init
# shellcheck disable=SC2086 # options, split on purpose
chsm_start ${BENCH_CHSMD_ARGS:-}
enroll_platform

# load NAME ARGS...: one chsm-load run into $IT_DIR/NAME.json.
load() {
  local name=$1; shift
  "${CLIENT_WRAP[@]}" "$CHSM_BIN/chsm-load" --url "$BASE" --key "$SIGN_KEY" --ca "$CACERT" \
    --connections "$CONNS" --duration "$SECONDS_PER_RUN" --warmup 2 --server-pid "$(service_pid)" \
    --report-json "$IT_DIR/$name.json" "$@" || die "chsm-load $name"
}
j() { jq -r "$2" "$IT_DIR/$1.json"; }
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, v }'; }

PRESIGN=$((SECONDS_PER_RUN * 4000 + 8000))
load status --mix status=100 --crypto-bound --presign "$PRESIGN"
BOUND=$(j status .crypto.boundReqPerSec)
CRYPTO_US=$(j status '.crypto.sm2SignUs + .crypto.sm2VerifyUs')
load mixed --mix status=60,vsm-get=20,token=10,create-delete=10 --presign "$PRESIGN"
RATE=$(awk -v b="$BOUND" 'BEGIN { printf "%.0f", b * 0.7 }')
load open --mix status=100 --rate "$RATE" --presign $((RATE * (SECONDS_PER_RUN + 2) + 1000))

row() {
  local name=$1 what=$2 cpu
  cpu=$(j "$name" .server.cpuUsPerRequest)
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$what" "$(fmt "$(j "$name" .reqPerSec)" 0)" \
    "$(fmt "$(j "$name" .latencyMs.p50)" 2)" "$(fmt "$(j "$name" .latencyMs.p99)" 2)" \
    "$(fmt "$cpu" 0)" "$(awk -v c="$cpu" -v k="$CRYPTO_US" 'BEGIN { printf "%.2f", c / k }')" \
    "$(j "$name" '[.httpStatus | to_entries[] | "\(.key): \(.value)"] | join(", ")')"
}

bench_loud
echo "Management API: chsm-load, $CONNS keep-alive TLS connections, ${SECONDS_PER_RUN} s per run after 2 s warm-up; $PINNING; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| crypto (this run, crypto module, one thread, CPU time) | value |"
echo "|---|---:|"
echo "| SM2 sign (µs) | $(fmt "$(j status .crypto.sm2SignUs)") |"
echo "| SM2 verify (µs) | $(fmt "$(j status .crypto.sm2VerifyUs)") |"
echo "| one verify + one sign (µs) | $(fmt "$CRYPTO_US") |"
echo "| crypto bound, $(j status .crypto.cores) cores (req/s) | $(fmt "$BOUND" 0) |"
echo
echo "| run | req/s | p50 (ms) | p99 (ms) | server CPU per request (µs) | CPU / crypto cost | HTTP statuses |"
echo "|---|---:|---:|---:|---:|---:|---|"
row status "GET /chsm/status, closed loop"
row mixed "mixed (status 60, vsm-get 20, token 10, create-delete 10), closed loop"
row open "GET /chsm/status, open loop at $RATE req/s (70 % of the bound)"
echo
echo "(server CPU: user + system time of the chsmd service process over the measured"
echo " requests; RSS of chsmd after warm-up and at the end of the mixed run:"
echo " $(j mixed .server.rssKibStart) KiB, $(j mixed .server.rssKibEnd) KiB)"
