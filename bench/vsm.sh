#!/usr/bin/env bash
# bench/vsm.sh: the VSM service through the SDF library (docs/PERFORMANCE.md,
# "VSM service"). One CHSM on loopback (tests/integration/lib.sh), one
# running VSM with a token and room for 256 sessions; bench_vsm runs each
# operation with 1, 8 and 64 sessions beside the raw crypto module and
# prints its table.
#
# usage: CHSM_BIN=build/bin bench/vsm.sh   (or bench/run.sh vsm [BUILD_DIR])
# BENCH_SECONDS (default 3) per figure; BENCH_SESSIONS (default 1,8,64).
set -uo pipefail
BENCH_NAME=vsm
. "$(dirname "$0")/lib.sh"

bench_quiet
chsm_init
chsm_start
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
  "$CHSM_BIN/bench_vsm" --seconds "${BENCH_SECONDS:-3}" --sessions "${BENCH_SESSIONS:-1,8,64}" \
  --vsm-pid "$pid" > "$IT_DIR/table" || { cat "$IT_DIR/table"; die "bench_vsm failed"; }
bench_loud
cat "$IT_DIR/table"
echo "(load average $(cut -d' ' -f1-3 /proc/loadavg))"
