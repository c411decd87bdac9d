# lib.sh: shared by the integration tests, which drive a real chsmd on
# loopback. Requests here are signed with the openssl CLI and sent with curl,
# independent of the project's own signing code; chsmctl is used where a
# test says so.
#
# Environment (set by CTest): CHSM_BIN, the folder with chsmd, chsm-vsmd and
# chsmctl.
#
# A test sources this file, calls `it_begin NAME`, uses the helpers, records
# checks with `check`/`expect`, and ends with `it_end`, which prints
# "N passed, M failed" and exits non-zero on any failure.

set -uo pipefail

: "${CHSM_BIN:?CHSM_BIN must name the folder with chsmd, chsm-vsmd and chsmctl}"
IT_PASS=0
IT_FAIL=0
IT_DIR=$(mktemp -d /tmp/chsm-it-XXXXXX)
# Sanitizer builds (SANITIZE=1): every sanitized program this test starts
# (chsmd, chsm-vsmd, chsmctl, vsmtool, ...) writes its ASan, LeakSanitizer
# or UBSan report into $IT_SAN_DIR instead of stderr; it_end fails the test
# when a report appeared. Options already set in the environment are kept.
IT_SAN_DIR=$IT_DIR/sanitizer
mkdir -p "$IT_SAN_DIR"
export ASAN_OPTIONS="log_path=$IT_SAN_DIR/asan:exitcode=86:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$IT_SAN_DIR/ubsan:print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# CHSM_VALGRIND=1: chsm_start runs chsmd, and every program it starts from
# the build (the service child, chsm-vsmd), under Valgrind memcheck; each
# process logs to $IT_DIR/valgrind, and it_end fails the test on any error
# or definite/indirect leak reported there.
IT_VG_DIR=$IT_DIR/valgrind
CHSMD_PID=""
IT_CHSMD_PIDS=""   # every chsmd started by chsm_start; it_cleanup stops them
DISTID=1234567812345678

# chsm_stop_all: stops every chsmd this test started (SIGTERM, then SIGKILL
# after 10 s, 60 s under Valgrind), whichever is current.
chsm_stop_all() {
  local p n=100
  [ "${CHSM_VALGRIND:-0}" = 1 ] && n=600
  for p in $IT_CHSMD_PIDS; do kill -TERM "$p" 2>/dev/null; done
  for p in $IT_CHSMD_PIDS; do
    for _ in $(seq 1 "$n"); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  IT_CHSMD_PIDS=""
}

it_cleanup() {
  chsm_stop_all
  # Python helpers started by tests register their pids here.
  for p in ${IT_BG_PIDS:-}; do kill "$p" 2>/dev/null; done
  rm -rf "$IT_DIR"
}
trap it_cleanup EXIT

it_begin() { IT_NAME=$1; echo "# $IT_NAME (workdir $IT_DIR)"; }

# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() {
  local desc=$1; shift
  if "$@"; then IT_PASS=$((IT_PASS + 1)); echo "ok - $desc"
  else IT_FAIL=$((IT_FAIL + 1)); echo "not ok - $desc"; fi
}

# fail_now MESSAGE: records a failure and stops the test.
fail_now() { IT_FAIL=$((IT_FAIL + 1)); echo "not ok - $1"; it_end; }

# it_check_reports: stops every chsmd of the test (so that sanitized or
# Valgrind-run processes end and write their leak reports), then counts a
# failure for each sanitizer report and each Valgrind log with errors.
it_check_reports() {
  chsm_stop_all
  local f
  for f in "$IT_SAN_DIR"/*; do
    [ -s "$f" ] || continue
    IT_FAIL=$((IT_FAIL + 1)); echo "not ok - sanitizer report ${f##*/}:"
    head -n 40 "$f" | sed 's/^/#   /'
  done
  [ -d "$IT_VG_DIR" ] || return 0
  for f in "$IT_VG_DIR"/*.log; do
    [ -s "$f" ] || continue
    if vg_log_bad "$f"; then
      IT_FAIL=$((IT_FAIL + 1)); echo "not ok - valgrind ${f##*/}:"
      grep -v '^==[0-9]*== *$' "$f" | head -n 60 | sed 's/^/#   /'
    fi
  done
}

# vg_log_bad FILE: the memcheck log FILE reports an error: a non-zero ERROR
# SUMMARY, or an error record itself (memcheck's wording), which also counts
# in the log of a process killed with SIGKILL (no summary there), and a
# death by SIGILL, SIGABRT, SIGBUS, SIGFPE or SIGSEGV. test_vg_reports
# checks it on fixtures.
vg_log_bad() {
  grep -q 'ERROR SUMMARY: [1-9]' "$1" && return 0
  grep -Eq '^==[0-9]+== (Invalid (read|write|free|alignment)|Mismatched free|Conditional jump or move depends on uninitialised|Use of uninitialised value|Syscall param |Source and destination overlap|Argument .* of function .* has a fishy|Jump to the invalid address|.* are (definitely|indirectly) lost in loss record|Process terminating with default action of signal (4|6|7|8|11) )' "$1"
}

it_end() {
  it_check_reports
  echo "$IT_PASS passed, $IT_FAIL failed"
  [ "$IT_FAIL" -eq 0 ] && exit 0
  if [ -n "${CHSMD_LOG:-}" ] && [ -f "$CHSMD_LOG" ]; then
    echo "# last lines of the chsmd log:"; tail -n 40 "$CHSMD_LOG" | sed 's/^/#   /'
  fi
  exit 1
}

# ---- the CHSM ----

# chsm_init [chsmd init options]: a new CHSM in $IT_DIR/state (or $STATE if
# set). Sets STATE, DEVICE_ID, DEVICE_FP, ENROLL_CODE, CACERT.
chsm_init() {
  STATE=${STATE:-$IT_DIR/state}
  local out
  out=$("$CHSM_BIN/chsmd" init --state-dir "$STATE" "$@") || fail_now "chsmd init $*"
  DEVICE_ID=$(printf '%s\n' "$out" | sed -n 's/^device-id: //p')
  DEVICE_FP=$(printf '%s\n' "$out" | sed -n 's/^device-key-fingerprint: //p')
  ENROLL_CODE=$(printf '%s\n' "$out" | sed -n 's/^enrollment-code: //p')
  CACERT=$STATE/tls-cert.pem
}

# chsm_start [chsmd run options]: runs chsmd on 127.0.0.1 with an ephemeral
# port. Sets CHSMD_PID, PORT, BASE (https://127.0.0.1:PORT), CHSMD_LOG.
# CHSMD_WRAP (optional, split on spaces) goes before chsmd's path, e.g.
# "nsenter --net=/run/netns/X unshare --uts" (commands that exec chsmd).
chsm_start() {
  CHSMD_LOG=${CHSMD_LOG:-$IT_DIR/chsmd.log}
  local mark
  mark=$(wc -l 2>/dev/null < "$CHSMD_LOG" || echo 0)
  local -a vg=() ; local tries=200
  if [ "${CHSM_VALGRIND:-0}" = 1 ]; then
    mkdir -p "$IT_VG_DIR"
    # Only the project's programs are followed, not the system's tools.
    vg=(valgrind --trace-children=yes --trace-children-skip='/usr/*,/bin/*,/sbin/*'
        --child-silent-after-fork=yes --leak-check=full --errors-for-leak-kinds=definite,indirect
        --show-leak-kinds=definite,indirect --error-exitcode=87 --log-file="$IT_VG_DIR/vg.%p.log")
    tries=1200
  fi
  ${CHSMD_WRAP:-} "${vg[@]}" "$CHSM_BIN/chsmd" run --state-dir "$STATE" --listen 127.0.0.1:0 "$@" >>"$CHSMD_LOG" 2>&1 &
  CHSMD_PID=$!
  IT_CHSMD_PIDS="$IT_CHSMD_PIDS $CHSMD_PID"
  for _ in $(seq 1 "$tries"); do
    PORT=$(tail -n +"$((mark + 1))" "$CHSMD_LOG" | sed -n 's/.*event=started .* port=\([0-9]*\).*/\1/p' | tail -n 1)
    [ -n "$PORT" ] && break
    kill -0 "$CHSMD_PID" 2>/dev/null || fail_now "chsmd exited at start"
    sleep 0.05
  done
  [ -n "$PORT" ] || fail_now "chsmd did not report its port"
  BASE=https://127.0.0.1:$PORT
}

# chsm_forget PID: a chsmd that has ended leaves the list it_cleanup stops
# (so that a reused pid is never signalled).
chsm_forget() {
  local p rest=""
  for p in $IT_CHSMD_PIDS; do [ "$p" = "$1" ] || rest="$rest $p"; done
  IT_CHSMD_PIDS=$rest
}

# chsm_stop: SIGTERM and wait for a clean exit (returns its status).
chsm_stop() {
  kill -TERM "$CHSMD_PID"
  local rc=0
  wait "$CHSMD_PID" || rc=$?
  chsm_forget "$CHSMD_PID"
  CHSMD_PID=""
  return $rc
}

# chsm_kill: SIGKILL of the launcher, as a crash of the whole CHSM (the
# service dies with it, and the VSMs with the service).
chsm_kill() {
  kill -KILL "$CHSMD_PID"; wait "$CHSMD_PID" 2>/dev/null
  chsm_forget "$CHSMD_PID"; CHSMD_PID=""
}

# chsm_save NAME / chsm_use NAME: several CHSMs in one test. Saves the
# globals of the current CHSM as NAME_STATE, NAME_BASE, ...; or makes the
# CHSM saved as NAME the current one. it_cleanup stops all of them.
CHSM_GLOBALS="STATE DEVICE_ID DEVICE_FP ENROLL_CODE CACERT CHSMD_PID PORT BASE CHSMD_LOG"
chsm_save() { local v; for v in $CHSM_GLOBALS; do printf -v "$1_$v" '%s' "${!v-}"; done; }
chsm_use() { local v n; for v in $CHSM_GLOBALS; do n=$1_$v; printf -v "$v" '%s' "${!n-}"; done; }
# chsm_on NAME COMMAND...: runs COMMAND with the CHSM saved as NAME current,
# and saves its globals again after (COMMAND may restart it).
chsm_on() { local c=$1 rc=0; shift; chsm_use "$c"; "$@" || rc=$?; chsm_save "$c"; return $rc; }

# ---- keys ----

# sm2_keygen NAME: $IT_DIR/NAME.pem (private) and NAME.pub.pem; prints the
# fingerprint (SM3 of 04||X||Y, computed with the CLI).
sm2_keygen() {
  openssl genpkey -algorithm SM2 -out "$IT_DIR/$1.pem" 2>/dev/null
  openssl pkey -in "$IT_DIR/$1.pem" -pubout -out "$IT_DIR/$1.pub.pem"
  sm2_fingerprint "$IT_DIR/$1.pub.pem"
}

# sm2_fingerprint PUBPEM: the last 65 bytes of the DER SPKI are 04||X||Y.
sm2_fingerprint() {
  openssl pkey -pubin -in "$1" -outform DER | tail -c 65 | openssl dgst -sm3 -r | cut -d' ' -f1
}

# ---- requests signed with the openssl CLI ----

sm3_hex() { openssl dgst -sm3 -r "$1" | cut -d' ' -f1; }

# gmt_request METHOD TARGET [BODY]: signs with $SIGN_KEY (private PEM) and
# key id $SIGN_KEY_ID, sends with curl, and sets:
#   RESP_STATUS (HTTP status), RESP_BODY (file), RESP_HEADERS (file),
#   RESP_CODE (the envelope's code, or "" when not JSON).
# Overrides for error tests (unset to get the normal value):
#   GMT_TS, GMT_NONCE, GMT_KEY_ID, GMT_ALG, GMT_SIG (a literal signature),
#   GMT_OMIT (a header name to leave out), GMT_IDEM (idempotency key),
#   GMT_CT (content type; default application/json when there is a body),
#   GMT_SIGN_TARGET / GMT_SIGN_METHOD / GMT_SIGN_BODY (sign something else
#   than what is sent), GMT_HMAC_CODE (enrollment: MAC with this code).
gmt_request() {
  local method=$1 target=$2 body=${3-}
  local f=$IT_DIR/req
  printf '%s' "$body" > "$f.body"
  local ts=${GMT_TS:-$(($(date +%s%N) / 1000000))}
  local nonce=${GMT_NONCE:-$(openssl rand -hex 16)}
  local keyid alg sig
  if [ -n "${GMT_HMAC_CODE:-}" ]; then keyid=${GMT_KEY_ID:-enrollment}; alg=${GMT_ALG:-HMAC-SM3}
  else keyid=${GMT_KEY_ID:-$SIGN_KEY_ID}; alg=${GMT_ALG:-SM2-SM3}; fi
  printf '%s' "${GMT_SIGN_BODY-$body}" > "$f.signbody"
  printf 'GMT0088-V1\n%s\n%s\n%s\n%s\n%s\n%s' "${GMT_SIGN_METHOD:-$method}" \
    "${GMT_SIGN_TARGET:-$target}" "$ts" "$nonce" "$keyid" "$(sm3_hex "$f.signbody")" > "$f.tbs"
  if [ -n "${GMT_SIG+x}" ]; then sig=$GMT_SIG
  elif [ -n "${GMT_HMAC_CODE:-}" ]; then
    sig=$(openssl dgst -sm3 -hmac "$GMT_HMAC_CODE" -binary "$f.tbs" | base64 -w0)
  else
    sig=$(openssl dgst -sm3 -sign "$SIGN_KEY" -sigopt distid:$DISTID "$f.tbs" | base64 -w0)
  fi
  LAST_NONCE=$nonce
  local -a h=()
  [ "${GMT_OMIT:-}" = X-GMT-Timestamp ] || h+=(-H "X-GMT-Timestamp: $ts")
  [ "${GMT_OMIT:-}" = X-GMT-Nonce ] || h+=(-H "X-GMT-Nonce: $nonce")
  [ "${GMT_OMIT:-}" = X-GMT-Key-Id ] || h+=(-H "X-GMT-Key-Id: $keyid")
  [ "${GMT_OMIT:-}" = X-GMT-Signature-Alg ] || h+=(-H "X-GMT-Signature-Alg: $alg")
  [ "${GMT_OMIT:-}" = X-GMT-Signature ] || h+=(-H "X-GMT-Signature: $sig")
  [ -z "${GMT_IDEM:-}" ] || h+=(-H "X-GMT-Idempotency-Key: $GMT_IDEM")
  if [ -n "$body" ] || [ -n "${GMT_CT:-}" ]; then h+=(-H "Content-Type: ${GMT_CT:-application/json}"); fi
  gmt_send "$method" "$target" "$f.body" "${h[@]}"
}

# gmt_send METHOD TARGET BODYFILE [curl args]: sends as is (no signing).
gmt_send() {
  local method=$1 target=$2 bodyfile=$3; shift 3
  RESP_BODY=$IT_DIR/resp.body
  RESP_HEADERS=$IT_DIR/resp.headers
  local -a data=()
  if [ -s "$bodyfile" ]; then data=(--data-binary "@$bodyfile"); fi
  RESP_STATUS=$(curl -sS --cacert "$CACERT" -X "$method" -H 'Expect:' "${data[@]}" "$@" \
    -D "$RESP_HEADERS" -o "$RESP_BODY" -w '%{http_code}' --path-as-is "$BASE$target")
  RESP_CODE=$(jq -r '.code // empty' "$RESP_BODY" 2>/dev/null || true)
}

# expect DESCRIPTION CODE HTTPSTATUS: the last response had them, and its
# device signature verifies with the openssl CLI.
expect() {
  local desc=$1 code=$2 status=$3
  if [ "$RESP_CODE" = "$code" ] && [ "$RESP_STATUS" = "$status" ]; then
    IT_PASS=$((IT_PASS + 1)); echo "ok - $desc ($code/$status)"
  else
    IT_FAIL=$((IT_FAIL + 1))
    echo "not ok - $desc: want $code/$status, got ${RESP_CODE:-?}/$RESP_STATUS: $(head -c 300 "$RESP_BODY")"
  fi
}

# resp_data JQ: a field of the last response's data.
resp_data() { jq -r ".data$1" "$RESP_BODY"; }

# header NAME: a header of the last response.
resp_header() { grep -i "^$1:" "$RESP_HEADERS" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }

# device_pub_pem: the device public key, from 7.4.1.
device_pub_pem() {
  curl -sS --cacert "$CACERT" "$BASE/gmt0088/v1/auth/platform-key/fingerprint" |
    jq -r .data.devicePublicKey > "$IT_DIR/device.pub.pem"
}

# response_signature_ok NONCE: verifies the last response's device
# signature with the openssl CLI (device_pub_pem must have run).
response_signature_ok() {
  local nonce=$1 f=$IT_DIR/rsp
  printf 'GMT0088-V1-RESPONSE\n%s\n%s\n%s' "$nonce" "$RESP_STATUS" "$(sm3_hex "$RESP_BODY")" > "$f.tbs"
  resp_header X-GMT-Device-Signature | base64 -d > "$f.sig" 2>/dev/null || return 1
  [ "$(resp_header X-GMT-Device-Key-Id)" = "$DEVICE_FP" ] || return 1
  openssl dgst -sm3 -verify "$IT_DIR/device.pub.pem" -sigopt distid:$DISTID \
    -signature "$f.sig" "$f.tbs" >/dev/null 2>&1
}

# enroll_platform: makes the platform key "platform" and enrolls it with
# the enrollment code (HMAC-SM3 by the CLI). Sets SIGN_KEY, SIGN_KEY_ID.
enroll_platform() {
  SIGN_KEY_ID=$(sm2_keygen platform)
  SIGN_KEY=$IT_DIR/platform.pem
  local pem
  pem=$(jq -Rs . < "$IT_DIR/platform.pub.pem")
  GMT_HMAC_CODE=$ENROLL_CODE gmt_request PUT /gmt0088/v1/auth/platform-key "{\"publicKey\":$pem}"
  [ "$RESP_CODE" = 0 ] || fail_now "enrollment: got ${RESP_CODE:-?}/$RESP_STATUS $(cat "$RESP_BODY")"
}

# ctl ARGS: chsmctl against this CHSM with the platform key.
ctl() {
  "$CHSM_BIN/chsmctl" --url "$BASE" --key "$SIGN_KEY" --cacert "$CACERT" \
    --device-fingerprint "$DEVICE_FP" "$@"
}

# wait_task TASKID: polls GET /tasks/ID until it ends; sets TASK_STATE,
# TASK_CODE (bounded: 60 s).
wait_task() {
  for _ in $(seq 1 600); do
    gmt_request GET "/gmt0088/v1/tasks/$1"
    TASK_STATE=$(resp_data .state)
    TASK_CODE=$(resp_data .code)
    case $TASK_STATE in succeeded|failed) return 0 ;; esac
    sleep 0.1
  done
  return 1
}

# eventually SECONDS COMMAND...: retries until the command succeeds (for 6
# times as long under Valgrind, as chsm_stop_all waits).
eventually() {
  local limit=$1; shift
  [ "${CHSM_VALGRIND:-0}" = 1 ] && limit=$((limit * 6))
  local end=$(( $(date +%s) + limit ))
  while [ "$(date +%s)" -le "$end" ]; do "$@" && return 0; sleep 0.1; done
  return 1
}

# ceiling_past TS: the replay window's durable timestamp ceiling (setting
# auth.ceilingMs, docs/api.md §1.4) is at or above TS, so a request with
# that timestamp takes the fast path (its nonce in memory only).
ceiling_past() {
  python3 -c 'import sqlite3,sys; r = sqlite3.connect(sys.argv[1]).execute("select value from settings where name = ?", ("auth.ceilingMs",)).fetchone(); sys.exit(0 if r and int(r[0]) >= int(sys.argv[2]) else 1)' "$STATE/chsm.db" "$1"
}

# free_port: a TCP port free on 127.0.0.1 right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- VSM helpers (lifecycle, durability, callback and chsmctl tests) ----

# listening HOST PORT: something accepts TCP connections there.
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
not_listening() { ! listening "$1" "$2"; }

# service_pid: the pid of the service `chsmd run` (the launcher, CHSMD_PID)
# runs now, `chsmd serve` (empty if none).
service_pid() { pgrep -P "$CHSMD_PID" -f ' serve ' | head -n 1; }

# vsm_pid ID: the pid of this chsmd's chsm-vsmd for VSM ID (empty if none).
vsm_pid() {
  local s; s=$(service_pid)
  [ -n "$s" ] && pgrep -P "$s" -f "chsm-vsmd --vsm-id $1 " || true
}

# vsm_net IP PORT: a 7.3.3 network object.
vsm_net() { printf '{"ipAddress":"%s","prefixLength":8,"port":%s}' "$1" "$2"; }

# task_ok DESCRIPTION METHOD TARGET [BODY]: an asynchronous request that is
# accepted (202) and whose task succeeds. Sets TASK_ID; RESP_* then hold
# the final task.
task_ok() {
  local desc=$1; shift
  gmt_request "$@"
  expect "$desc: accepted" 0 202
  TASK_ID=$(resp_data .taskId)
  wait_task "$TASK_ID"
  check "$desc: task succeeded (got ${TASK_STATE:-?} ${TASK_CODE:-?})" [ "${TASK_STATE:-}" = succeeded ]
}

# vsm_state ID: the VSM's state from 7.3.1 (empty when it fails).
vsm_state() { gmt_request GET "/gmt0088/v1/vsms/$1"; resp_data .state; }
vsm_state_is() { [ "$(vsm_state "$1")" = "$2" ]; }

# proc_gone PID: the process has ended (gone, or a zombie nobody reaped).
proc_gone() { [ ! -e "/proc/$1" ] || [ "$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" = Z ]; }

# jqt FILE EXPR: the jq expression is true of the JSON file.
jqt() { jq -e "$2" "$1" >/dev/null; }

# ---- callbacks: a receiver (callback_receiver.py) that records each POST ----

# receiver_start DIR [--port N] [--fail-first N]: sets RCV_PID, RCV_PORT.
receiver_start() {
  local dir=$1; shift
  python3 "$(dirname "${BASH_SOURCE[0]}")/callback_receiver.py" --dir "$dir" "$@" > "$dir.port" 2>>"$IT_DIR/receiver.err" &
  RCV_PID=$!
  IT_BG_PIDS="${IT_BG_PIDS:-} $RCV_PID"
  RCV_PORT=""
  for _ in $(seq 1 100); do
    RCV_PORT=$(head -n 1 "$dir.port" 2>/dev/null)
    [ -n "$RCV_PORT" ] && return 0
    sleep 0.05
  done
  fail_now "callback receiver did not start"
}
receiver_stop() { kill "$RCV_PID" 2>/dev/null; wait "$RCV_PID" 2>/dev/null; }

# records DIR TASKID: the numbers of the POSTs in DIR about TASKID.
records() {
  for j in "$1"/*.json; do
    [ -e "$j" ] || continue
    jq -e --arg t "$2" '.taskId == $t' "${j%.json}.body" >/dev/null 2>&1 && basename "${j%.json}"
  done
}
# hdr RECORD NAME: a header of a recorded POST (name case-insensitive).
hdr() {
  jq -r --arg n "${2,,}" '.headers | to_entries[] | select(.key | ascii_downcase == $n) | .value' "$1.json"
}
# callback_signature_ok RECORD: verifies X-GMT-Signature with the device's
# public key over the §5 string to sign built from what was received.
callback_signature_ok() {
  local r=$1
  printf 'GMT0088-V1\nPOST\n%s\n%s\n%s\n%s\n%s' "$(jq -r .path "$r.json")" "$(hdr "$r" X-GMT-Timestamp)" \
    "$(hdr "$r" X-GMT-Nonce)" "$(hdr "$r" X-GMT-Key-Id)" "$(sm3_hex "$r.body")" > "$r.tbs"
  hdr "$r" X-GMT-Signature | base64 -d > "$r.sig" 2>/dev/null || return 1
  openssl dgst -sm3 -verify "$IT_DIR/device.pub.pem" -sigopt distid:$DISTID \
    -signature "$r.sig" "$r.tbs" >/dev/null 2>&1
}
# ---- answers checked completely (auth, errors and idempotency tests) ----

# expect_signed DESCRIPTION CODE HTTPSTATUS [NONCE]: expect, and also the
# device signature verifies over NONCE (default $LAST_NONCE; "" for a request
# without a well-formed nonce; device_pub_pem must have run), and an error's
# envelope has a message and a requestId but no data. Each extra failure is
# counted; the successes are counted once, by expect.
expect_signed() {
  local desc=$1 code=$2 nonce=${4-${LAST_NONCE:-}}
  expect "$desc" "$code" "$3"
  if ! device_signed "$nonce"; then
    IT_FAIL=$((IT_FAIL + 1)); echo "not ok - $desc: device signature does not verify"
  fi
  if [ "$code" != 0 ] && ! error_envelope_ok; then
    IT_FAIL=$((IT_FAIL + 1)); echo "not ok - $desc: error envelope: $(head -c 300 "$RESP_BODY")"
  fi
}

# error_envelope_ok: the last answer is an error envelope (§6): a message
# and a requestId, no data.
error_envelope_ok() {
  jq -e '(has("data") | not) and (.message | type == "string" and length > 0)
    and (.requestId | type == "string" and length > 0)' "$RESP_BODY" >/dev/null 2>&1
}

# device_signed NONCE: what response_signature_ok checks, with three
# processes instead of a dozen (the auth and errors tests check hundreds of
# answers on shared cores).
device_signed() {
  local name value sig="" kid="" digest _ f=$IT_DIR/rsp
  while IFS=' ' read -r name value; do
    case ${name,,} in
      x-gmt-device-signature:) sig=${value%$'\r'} ;;
      x-gmt-device-key-id:) kid=${value%$'\r'} ;;
    esac
  done < "$RESP_HEADERS"
  [ -n "$sig" ] && [ "$kid" = "$DEVICE_FP" ] || return 1
  read -r digest _ < <(openssl dgst -sm3 -r "$RESP_BODY")
  printf 'GMT0088-V1-RESPONSE\n%s\n%s\n%s' "$1" "$RESP_STATUS" "$digest" > "$f.tbs"
  base64 -d <<<"$sig" > "$f.sig" 2>/dev/null &&
    openssl dgst -sm3 -verify "$IT_DIR/device.pub.pem" -sigopt distid:$DISTID \
      -signature "$f.sig" "$f.tbs" >/dev/null 2>&1
}

# hold_port PORT: a process (not a VSM) that listens on 127.0.0.1:PORT, or
# on a free port for 0, until killed. Sets HOLDER_PID and HELD_PORT.
hold_port() {
  local f=$IT_DIR/holder.$1.$RANDOM
  python3 -c 'import signal, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
print(s.getsockname()[1], flush=True); signal.pause()' "$1" > "$f" 2>/dev/null &
  HOLDER_PID=$!
  IT_BG_PIDS="${IT_BG_PIDS:-} $HOLDER_PID"
  for _ in $(seq 1 100); do
    HELD_PORT=$(head -n 1 "$f" 2>/dev/null)
    [ -n "$HELD_PORT" ] && return 0
    kill -0 "$HOLDER_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# vsm_tool PORT TOKENID SECRETFILE ARGS...: vsmtool (the SDF library's CLI)
# against the VSM on 127.0.0.1:PORT, authenticated with that token;
# SECRETFILE holds the secret in base64, as given to 7.3.4.
vsm_tool() {
  "$CHSM_BIN/vsmtool" --endpoint "127.0.0.1:$1" --token-id "$2" --token-secret-file "$3" "${@:4}"
}

# ---- nginx: an HTTP(S) server that takes PUT (WebDAV module) ----

# nginx_start [tls]: our own nginx (never the system service), run as the
# current user, everything under $IT_DIR/nginx, serving $IT_DIR/www on
# 127.0.0.1: GET, PUT (creating folders) and DELETE anywhere; /auth/ answers
# 403 unless "Authorization: Bearer test-token"; /redir/X redirects (302) to
# /X, /redir-other/X to /X on a second origin, /loop/ to itself. Sets
# NGINX_PID, NGINX_URL (http://127.0.0.1:PORT), NGINX_URL2 (the second
# origin), NGINX_WWW; with "tls" also NGINX_TLS_URL (https, an ECDSA P-256
# certificate for IP 127.0.0.1) and NGINX_CA (that certificate).
# NGINX_EXTRA_CONF, when set, goes into the http block as it is (more
# servers; bench/mgmt.sh's floor).
nginx_start() {
  local d=$IT_DIR/nginx port port2 tls="" user=""
  NGINX_WWW=$IT_DIR/www
  mkdir -p "$d/tmp" "$NGINX_WWW"
  port=$(free_port); port2=$(free_port)
  [ "$(id -u)" -ne 0 ] || user="user root root;"
  if [ "${1:-}" = tls ]; then
    local tport; tport=$(free_port)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
      -keyout "$d/tls.key" -out "$d/tls.crt" 2>/dev/null || fail_now "nginx: openssl req"
    NGINX_CA=$d/tls.crt
    NGINX_TLS_URL=https://127.0.0.1:$tport
    tls="server { listen 127.0.0.1:$tport ssl; ssl_certificate $d/tls.crt;
      ssl_certificate_key $d/tls.key; root $NGINX_WWW; client_max_body_size 0;
      location / { dav_methods PUT DELETE; create_full_put_path on; } }"
  fi
  cat > "$d/nginx.conf" <<CONF
$user
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log info;
events { worker_connections 64; }
http {
  access_log $d/access.log;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$port;
    root $NGINX_WWW;
    client_max_body_size 0;
    location / { dav_methods PUT DELETE; create_full_put_path on; }
    location /auth/ {
      if (\$http_authorization != "Bearer test-token") { return 403; }
      dav_methods PUT DELETE; create_full_put_path on;
    }
    location /redir/ { rewrite ^/redir(/.*)\$ \$1 redirect; }
    location /redir-other/ { rewrite ^/redir-other(/.*)\$ http://127.0.0.1:$port2\$1 redirect; }
    location /loop/ { return 302 /loop/; }
  }
  server {
    listen 127.0.0.1:$port2;
    root $NGINX_WWW;
    location /auth/ { if (\$http_authorization != "Bearer test-token") { return 403; } }
  }
  $tls
  ${NGINX_EXTRA_CONF:-}
}
CONF
  nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >>"$d/stdout.log" 2>&1 &
  NGINX_PID=$!
  IT_BG_PIDS="${IT_BG_PIDS:-} $NGINX_PID"
  NGINX_URL=http://127.0.0.1:$port
  NGINX_URL2=http://127.0.0.1:$port2
  for _ in $(seq 1 100); do
    listening 127.0.0.1 "$port" && listening 127.0.0.1 "$port2" && return 0
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.05
  done
  tail -n 20 "$d/error.log" "$d/stdout.log" 2>/dev/null | sed 's/^/#   /'
  fail_now "nginx did not start"
}

# nginx_stop: stops it (fast shutdown) and waits.
nginx_stop() {
  [ -n "${NGINX_PID:-}" ] || return 0
  kill -TERM "$NGINX_PID" 2>/dev/null
  wait "$NGINX_PID" 2>/dev/null
  IT_BG_PIDS=$(printf '%s\n' ${IT_BG_PIDS:-} | grep -vx "$NGINX_PID" | tr '\n' ' ')
  NGINX_PID=""
}
