#!/usr/bin/env bash
# bench/drift.sh: how long a drift takes (docs/PERFORMANCE.md, "Drift").
#
# Two CHSMs of one security domain on loopback (A uploads its images to the
# nginx WebDAV fixture of tests/integration/lib.sh, or to a folder when
# nginx is missing). For VSMs of 10, 1,000 and 10,000 SM2 keys (made through
# the SDF library by bench_keyload): the VSM's service is killed, then
# `chsmctl drift` moves it to an empty VSM on B, and vsmtool signs on B
# until it succeeds. Reported: the time from the start of the export on A
# to that first signature on B, and the export, import and start steps.
# Then a CHSM image of 64 VSMs (those three and 61 more) is exported from A
# and imported into B; the rate is the image size over the task's own
# duration (finishedAt - startedAt). Beside it, bench_speed's raw SM4-CTR
# and SM3 rates measured in the same run.
#
# usage: CHSM_BIN=build/bin bench/drift.sh   (or bench/run.sh drift [BUILD_DIR])
# Takes a few minutes; prints the table on stdout, everything else goes to
# $IT_DIR/bench.log (kept on failure).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
: "${CHSM_BIN:?set CHSM_BIN to the folder with chsmd, chsmctl, vsmtool and bench_*}"
export CHSM_BIN
. "$HERE/../tests/integration/lib.sh"
LOG=$IT_DIR/bench.log
API=/gmt0088/v1
KEY_COUNTS=${BENCH_KEY_COUNTS:-10 1000 10000}

bench_cleanup() {
  chsm_stop_all
  if [ "$IT_FAIL" -ne 0 ]; then
    mkdir -p /tmp/bench-drift-logs
    cp "$LOG" "$IT_DIR"/a.log "$IT_DIR"/b.log /tmp/bench-drift-logs/ 2>/dev/null
    echo "logs: /tmp/bench-drift-logs" >&2
  fi
  it_cleanup
}
trap bench_cleanup EXIT
die() { echo "bench/drift.sh: $*" >&2; IT_FAIL=1; exit 1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# task_quiet DESC METHOD TARGET [BODY]: task_ok with its output in the log.
task_quiet() {
  local before=$IT_FAIL
  task_ok "$@" >>"$LOG" 2>&1
  [ "$IT_FAIL" = "$before" ] || die "$1 failed (see the log)"
}

exec 3>&1 1>>"$LOG" 2>&1
printf 'bench domain secret, long enough' > "$IT_DIR/domain.secret"
STATE=$IT_DIR/a CHSMD_LOG=$IT_DIR/a.log
chsm_init --domain-name bench --domain-secret-file "$IT_DIR/domain.secret" --max-vsms 80
chsm_start
enroll_platform
chsm_save A
STATE=$IT_DIR/b CHSMD_LOG=$IT_DIR/b.log CHSMD_PID=""
chsm_init --domain-name bench --domain-secret-file "$IT_DIR/domain.secret" --max-vsms 80
chsm_start
GMT_HMAC_CODE=$ENROLL_CODE gmt_request PUT $API/auth/platform-key "{\"publicKey\":$(jq -Rs . < "$IT_DIR/platform.pub.pem")}"
[ "$RESP_CODE" = 0 ] || die "enrollment on B"
chsm_save B
if declare -F nginx_start >/dev/null && command -v nginx >/dev/null; then
  nginx_start; UPLOAD_URL=$NGINX_URL/images/; STORE="nginx WebDAV (http, loopback)"
else
  mkdir -p "$IT_DIR/images"; UPLOAD_URL=file://$IT_DIR/images/; STORE="a local folder (file://)"
fi
chsm_on A gmt_request PUT $API/chsm/image-upload-address "{\"url\":\"$UPLOAD_URL\"}"
[ "$RESP_CODE" = 0 ] || die "image upload address"

SPEED=$("$CHSM_BIN/bench_speed" 2)
SM4=$(sed -n 's/^sm4-ctr //p' <<<"$SPEED"); SM3=$(sed -n 's/^sm3 //p' <<<"$SPEED")

drift_ctl() {
  "$CHSM_BIN/chsmctl" --key "$IT_DIR/platform.pem" drift \
    --from "$A_BASE" --from-cacert "$A_CACERT" --from-device-fingerprint "$A_DEVICE_FP" \
    --to "$B_BASE" --to-cacert "$B_CACERT" --to-device-fingerprint "$B_DEVICE_FP" --timeout 1800 "$@"
}
step_ms() { sed -nE "s/^drift: $1 +[a-zA-Z]+ +([0-9]+) ms.*/\\1/p" "$2"; }
status_state() { gmt_request GET "$API/vsms/$1/status"; resp_data .state; }

ROWS=()
head -c 1000 /dev/urandom > "$IT_DIR/doc"
for n in $KEY_COUNTS; do
  P=$(free_port); PT=$(free_port)
  head -c 24 /dev/urandom | base64 -w0 > "$IT_DIR/tok$n.b64"
  chsm_on A task_quiet "A: create v$n" POST $API/vsms "{\"vsmId\":\"v$n\",\"name\":\"bench\",
    \"network\":$(vsm_net 127.0.0.1 "$P"),\"resources\":{\"maxKeys\":$((n + 10))},
    \"token\":{\"tokenId\":\"app\",\"secret\":\"$(cat "$IT_DIR/tok$n.b64")\"},\"start\":true}"
  chsm_on B task_quiet "B: create t$n" POST $API/vsms "{\"vsmId\":\"t$n\",\"name\":\"spare\",\"network\":$(vsm_net 127.0.0.1 "$PT")}"
  LOAD=$(OPENCHSM_SDF_ENDPOINT=127.0.0.1:$P OPENCHSM_SDF_TOKEN_ID=app \
    OPENCHSM_SDF_TOKEN_SECRET_BASE64_FILE=$IT_DIR/tok$n.b64 "$CHSM_BIN/bench_keyload" 1 "$n" 2) ||
    die "loading $n keys"
  echo "v$n: $LOAD"
  pid=$(chsm_on A vsm_pid "v$n"); [ -n "$pid" ] || die "v$n has no process"
  kill -KILL "$pid"
  eventually 20 eval '[ "$(chsm_on A status_state v$n)" = fault ]' || die "v$n did not go to fault"
  t0=$(now_ms)
  drift_ctl --vsm "v$n" --target-vsm "t$n" > "$IT_DIR/drift$n.json" 2> "$IT_DIR/drift$n.err" ||
    { cat "$IT_DIR/drift$n.err"; die "drift of v$n"; }
  until vsm_tool "$PT" app "$IT_DIR/tok$n.b64" sign --index 1 --in "$IT_DIR/doc" > "$IT_DIR/sig$n" 2>/dev/null; do
    [ $(($(now_ms) - t0)) -lt 600000 ] || die "no signature on t$n"
    sleep 0.01
  done
  t1=$(now_ms)
  cat "$IT_DIR/drift$n.err"
  pre=0
  for s in check-source read-image check-target stop-source; do
    pre=$((pre + $(step_ms "$s" "$IT_DIR/drift$n.err")))
  done
  size=$(sed -nE 's/^drift: export .* ([0-9]+) bytes.*/\1/p' "$IT_DIR/drift$n.err")
  ROWS+=("$(printf '| %6s | %9s | %7s | %7s | %6s | %18s |' "$n" "$size" \
    "$(step_ms export "$IT_DIR/drift$n.err")" "$(step_ms import "$IT_DIR/drift$n.err")" \
    "$(step_ms start "$IT_DIR/drift$n.err")" "$((t1 - t0 - pre))")")
done

# ---- a CHSM image of 64 VSMs ----
have=$(chsm_on A eval 'gmt_request GET $API/vsms; jq ".data.vsms | length" "$RESP_BODY"')
for i in $(seq $((have + 1)) 64); do
  head -c 24 /dev/urandom | base64 -w0 > "$IT_DIR/c.b64"
  chsm_on A task_quiet "A: create c$i" POST $API/vsms "{\"vsmId\":\"c$i\",\"name\":\"fill\",
    \"network\":$(vsm_net 127.0.0.2 $((20000 + i))),\"token\":{\"tokenId\":\"app\",\"secret\":\"$(cat "$IT_DIR/c.b64")\"}}"
done
keys=$(chsm_on A eval 'gmt_request GET $API/vsms; jq "[.data.vsms[].keyCount] | add" "$RESP_BODY"')
task_seconds() { jq -r '(.finishedAt - .startedAt) / 1000' "$1"; }
chsm_on A ctl chsm export-image --wait --timeout 1800 > "$IT_DIR/cexp.json" || die "CHSM image export"
CURL=$(jq -r .result.url "$IT_DIR/cexp.json"); CSM3=$(jq -r .result.sm3 "$IT_DIR/cexp.json")
CSIZE=$(jq -r .result.sizeBytes "$IT_DIR/cexp.json"); CVSMS=$(jq -r '.result.vsmIds | length' "$IT_DIR/cexp.json")
chsm_on B ctl chsm import-image --url "$CURL" --sm3 "$CSM3" --wait --timeout 1800 > "$IT_DIR/cimp.json" ||
  die "CHSM image import"
ES=$(task_seconds "$IT_DIR/cexp.json"); IS=$(task_seconds "$IT_DIR/cimp.json")
rate() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", b / 1e6 / s; else print "-" }'; }

exec 1>&3
echo "Drift on $(nproc) CPUs, images stored on $STORE; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| keys   | image (B) | export  | import  | start  | export → 1st sign  |"
echo "|-------:|----------:|--------:|--------:|-------:|-------------------:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "(times in ms; the last column runs from the start of the export on A to the"
echo " first successful signature on B)"
echo
echo "| CHSM image ($CVSMS VSMs, $keys keys) | size (B) | seconds | MB/s |"
echo "|---|---:|---:|---:|"
echo "| export (A) | $CSIZE | $ES | $(rate "$CSIZE" "$ES") |"
echo "| import (B) | $CSIZE | $IS | $(rate "$CSIZE" "$IS") |"
echo
echo "| raw, in process, 1 core (bench_speed) | MB/s wall (cpu) |"
echo "|---|---:|"
echo "| SM4-CTR | $SM4 |"
echo "| SM3 | $SM3 |"
chsm_use B
