#!/usr/bin/env bash
# test_bench_smoke: every benchmark of bench/ in a tiny configuration runs
# to its end and prints well-formed Markdown tables, so that they keep
# building and working. Benchmarks are not tests: nothing here looks at a
# figure's value. Also: chsm-load's exit status (usage, --fail-on-error on a
# clean run and on a server that dies) and that it deletes the VSMs it made.
# The drift benchmark is left out (test_drift covers chsmctl drift; the
# benchmark takes minutes).
. "$(dirname "$0")/lib.sh"
it_begin bench_smoke
BENCH=$(cd "$(dirname "$0")/../../bench" && pwd)

# tables_ok FILE: at least one table; each starts with a header row and a
# |---| row, and all its rows have as many cells as its header.
tables_ok() {
  awk '
    /^\|/ { n = gsub(/\|/, "|"); line++
            if (line == 1) { cells = n; tables++ }
            else if (line == 2 && $0 !~ /^\|(-+:?\|)+$/ && $0 !~ /^\|(-+:?\|)+ *$/) bad = 1
            else if (n != cells) bad = 1
            next }
    { line = 0 }
    END { exit !(tables > 0 && !bad) }' "$1"
}

# ---- chsm-load ----
"$CHSM_BIN/chsm-load" --url https://127.0.0.1:1 --key /dev/null --ca /dev/null --connections 0 \
  >/dev/null 2>&1
check "chsm-load: a bad option is a usage error (2)" [ $? -eq 2 ]

chsm_init
chsm_start
enroll_platform
"$CHSM_BIN/chsm-load" --url "$BASE" --key "$SIGN_KEY" --ca "$CACERT" --connections 4 \
  --duration 1 --warmup 0.5 --mix status=40,status-all=10,vsm-get=10,vsm-status=10,token=10,create-delete=20 \
  --vsms 2 --delete-delay 100 --verify-every 1 --server-pid "$CHSMD_PID" --crypto-bound \
  --crypto-seconds 0.1 --presign 500 --tag smoke --report-json "$IT_DIR/load.json" \
  --fail-on-error > "$IT_DIR/load.txt" 2>&1
rc=$?
check "chsm-load: a clean mixed run exits 0 with --fail-on-error (got $rc)" [ $rc -eq 0 ]
check "chsm-load: prints well-formed tables" tables_ok "$IT_DIR/load.txt"
check "chsm-load: the report has requests, no 5xx, no drops, only good signatures" \
  jqt "$IT_DIR/load.json" '.requests > 0 and .http5xxWholeRun == 0 and .connectionsEvents.dropped == 0
    and .deviceSignatures.bad == 0 and .deviceSignatures.good > 0 and .failed == false
    and .server.cpuUsPerRequest > 0 and .crypto.boundReqPerSec > 0'
gmt_request GET /gmt0088/v1/vsms
check "chsm-load: the VSMs it made are deleted at the end" \
  jqt "$RESP_BODY" '[.data.vsms[].vsmId | select(startswith("smoke-"))] | length == 0'

# A server that dies during the run: dropped or failed connections, exit 1.
mark=$(wc -l < "$CHSMD_LOG")
"$CHSM_BIN/chsm-load" --url "$BASE" --key "$SIGN_KEY" --ca "$CACERT" --connections 4 \
  --duration 4 --warmup 0 --mix status=100 --presign 200 --timeout 2000 \
  --report-json "$IT_DIR/dead.json" --fail-on-error > "$IT_DIR/dead.txt" 2>&1 &
LOAD_PID=$!
eventually 30 eval '[ "$(tail -n +$((mark + 1)) "$CHSMD_LOG" | grep -c "interface=7.2.2")" -gt 5 ]'
chsm_kill
wait "$LOAD_PID"
rc=$?
check "chsm-load: a server killed during the run makes --fail-on-error exit 1 (got $rc)" [ $rc -eq 1 ]
check "chsm-load: ... and the report counts the lost connections" \
  jqt "$IT_DIR/dead.json" '.failed == true and (.connectionsEvents.dropped + .connectionsEvents.connectErrors + .connectionsEvents.closedIdle) > 0'

# ---- the benchmark scripts, tiny ----
BENCH_SECONDS=1 BENCH_CONNECTIONS=4 bash "$BENCH/mgmt.sh" > "$IT_DIR/mgmt.txt" 2>&1
rc=$?
check "bench/mgmt.sh runs (got $rc)" [ $rc -eq 0 ]
check "bench/mgmt.sh: well-formed tables" tables_ok "$IT_DIR/mgmt.txt"
check "bench/mgmt.sh: the three runs" [ "$(grep -c -E '^\| (GET /chsm/status|mixed)' "$IT_DIR/mgmt.txt")" -eq 3 ]
check "bench/mgmt.sh: the fingerprint run and the floor (nginx, chsm-load --not-chsm), both answered 200" \
  [ "$(grep -c -E '^\| (chsmd: unauthenticated|floor: nginx).*\| 200: [0-9]+ \|$' "$IT_DIR/mgmt.txt")" -eq 2 ]
check "bench/mgmt.sh: the allowance, the floor and chsmd's overhead" \
  [ "$(grep -c -E '^\| (allowance|floor: nginx worker|chsmd beyond)' "$IT_DIR/mgmt.txt")" -eq 4 ]

BENCH_SECONDS=0.2 BENCH_SESSIONS=1,2 bash "$BENCH/vsm.sh" > "$IT_DIR/vsm.txt" 2>&1
rc=$?
check "bench/vsm.sh runs (got $rc)" [ $rc -eq 0 ]
check "bench/vsm.sh: well-formed tables" tables_ok "$IT_DIR/vsm.txt"
check "bench/vsm.sh: seven operations" [ "$(grep -c -E '^\| sm[234]-' "$IT_DIR/vsm.txt")" -eq 7 ]
check "bench/vsm.sh: the round trip, measured, with no raw figures" \
  grep -q -E '^\| round-trip \| - \| - \| [0-9]+ \| [0-9]+ \| - \|' "$IT_DIR/vsm.txt"

BENCH_VSMS=3 bash "$BENCH/density.sh" > "$IT_DIR/density.txt" 2>&1
rc=$?
check "bench/density.sh runs (got $rc)" [ $rc -eq 0 ]
check "bench/density.sh: well-formed tables" tables_ok "$IT_DIR/density.txt"
check "bench/density.sh: three VSMs running, three processes" \
  grep -q -E '^\| VSMs running \(7\.2\.2\) / chsm-vsmd processes \| 3 / 3 \|' "$IT_DIR/density.txt"
[ "$IT_FAIL" -eq 0 ] || cat "$IT_DIR"/*.txt
it_end
