#!/usr/bin/env bash
# bench/vsm.sh: the VSM service through the SDF library (docs/PERFORMANCE.md,
# "VSM service"). One CHSM on loopback (tests/integration/lib.sh), one
# running VSM with a token and room for 256 sessions; bench_vsm runs each
# operation with 1, 8 and 64 sessions beside the raw crypto module and
# prints its table. With 2 or more CPUs the VSM is pinned to CPU 0
# (chsmd run --vsm-cpus 0, as an operator gives a VSM cores of its own)
# and bench_vsm to CPU 1 (taskset), so that the client's own system calls
# and switches are not paid out of the VSM's core; BENCH_VSM_CPUS and
# BENCH_CLIENT_CPUS change that ("" leaves a side unpinned).
#
# usage: CHSM_BIN=build/bin bench/vsm.sh   (or bench/run.sh vsm [BUILD_DIR])
# BENCH_SECONDS (default 3) per figure; BENCH_SESSIONS (default 1,8,64);
# BENCH_OPS (default all: bench_vsm --ops).
set -uo pipefail
BENCH_NAME=vsm
. "$(dirname "$0")/lib.sh"

bench_quiet
if [ "$(nproc)" -ge 2 ]; then
  VSM_CPUS=${BENCH_VSM_CPUS-0}; CLIENT_CPUS=${BENCH_CLIENT_CPUS-1}
else
  VSM_CPUS=${BENCH_VSM_CPUS-}; CLIENT_CPUS=${BENCH_CLIENT_CPUS-}
fi
chsm_init
chsm_start ${VSM_CPUS:+--vsm-cpus "$VSM_CPUS"}
enroll_platform
P=$(free_port)
head -c 32 /dev/urandom | base64 -w0 > "$IT_DIR/tok.b64"
before=$IT_FAIL
task_ok "create and start bv" POST /gmt0088/v1/vsms "{\"vsmId\":\"bv\",\"name\":\"bench\",
  \"network\":$(vsm_net 127.0.0.1 "$P"),\"resources\":{\"maxSessions\":256},
  \"token\":{\"tokenId\":\"app\",\"secret\":\"$(cat "$IT_DIR/tok.b64")\"},\"start\":true}"
[ "$IT_FAIL" = "$before" ] || die "creating the VSM"
pid=$(vsm_pid bv)
[ -n "$pid" ] || die "no chsm-vsmd for bv"
OPENCHSM_SDF_ENDPOINT=127.0.0.1:$P OPENCHSM_SDF_TOKEN_ID=app \
  OPENCHSM_SDF_TOKEN_SECRET_BASE64_FILE=$IT_DIR/tok.b64 \
  ${CLIENT_CPUS:+taskset -c "$CLIENT_CPUS"} "$CHSM_BIN/bench_vsm" --seconds "${BENCH_SECONDS:-3}" --sessions "${BENCH_SESSIONS:-1,8,64}" \
  --vsm-pid "$pid" ${BENCH_OPS:+--ops "$BENCH_OPS"} > "$IT_DIR/table" || { cat "$IT_DIR/table"; die "bench_vsm failed"; }
bench_loud
cat "$IT_DIR/table"
echo "(load average $(cut -d' ' -f1-3 /proc/loadavg))"
