#!/usr/bin/env bash
# Callbacks (PROFILE.md §7): when a task with a callbackUrl ends, the CHSM
# POSTs the task object, signed like a request (§5) with the device key;
# it retries on errors and non-2xx answers, while the receiver is down,
# and across its own restarts; failed tasks call back too. The receiver is
# callback_receiver.py; signatures are checked with the openssl CLI.
. "$(dirname "$0")/lib.sh"
it_begin callbacks
API=/gmt0088/v1
chsm_init --max-vsms 8
chsm_start
device_pub_pem
enroll_platform

all_signed() {  # DIR TASKID
  local r; for r in $(records "$1" "$2"); do callback_signature_ok "$1/$r" || return 1; done
}
# task_callback TASKID: GET /tasks/TASKID, then prints "attempts delivered".
task_callback() { gmt_request GET "$API/tasks/$1"; jq -r '"\(.data.callback.attempts) \(.data.callback.delivered)"' "$RESP_BODY"; }
delivered() { [ "$(task_callback "$1")" = "${2:-1} true" ]; }
delivered_any() { task_callback "$1" | grep -q ' true$'; }
attempted() { [ "$(task_callback "$1" | cut -d' ' -f1)" -ge 1 ]; }
# async_cb METHOD TARGET CALLBACKURL [EXTRA JSON MEMBERS]: submits, sets TASK_ID.
async_cb() {
  gmt_request "$1" "$2" "{\"callbackUrl\":\"$3\"${4:+,$4}}"
  expect "$1 ${2#$API} with a callback: accepted" 0 202
  TASK_ID=$(resp_data .taskId)
}
# check_callback DESC DIR TASKID STATE: the last POST about the task holds
# exactly the task object, signed by the device; sets REC.
check_callback() {
  local desc=$1 dir=$2 id=$3 state=$4
  REC=$dir/$(records "$dir" "$id" | tail -n 1)
  check "$desc: received" [ -e "$REC.body" ]
  check "$desc: exactly the fields of §7" jqt "$REC.body" \
    'keys == (["taskId","operation","target","state","code","message","createdAt","startedAt","finishedAt","result"] | sort)'
  check "$desc: state $state" [ "$(jq -r .state "$REC.body")" = "$state" ]
  gmt_request GET "$API/tasks/$id"
  check "$desc: body is the task object (GET /tasks without callback)" \
    [ "$(jq -cS . "$REC.body")" = "$(jq -cS '.data | del(.callback)' "$RESP_BODY")" ]
  check "$desc: JSON content type" eval '[[ "$(hdr "$REC" Content-Type)" == application/json* ]]'
  check "$desc: X-GMT-Key-Id is the device fingerprint" [ "$(hdr "$REC" X-GMT-Key-Id)" = "$DEVICE_FP" ]
  local alg; alg=$(hdr "$REC" X-GMT-Signature-Alg)
  check "$desc: algorithm SM2-SM3 (or default)" [ "${alg:-SM2-SM3}" = SM2-SM3 ]
  local ts now; ts=$(hdr "$REC" X-GMT-Timestamp); now=$(($(date +%s%N) / 1000000))
  check "$desc: timestamp in ms, recent" eval '[[ $ts =~ ^[0-9]+$ ]] && [ $((now - ts)) -lt 300000 ] && [ $((ts - now)) -lt 300000 ]'
  check "$desc: nonce well formed" eval '[[ $(hdr "$REC" X-GMT-Nonce) =~ ^[A-Za-z0-9_-]{16,64}$ ]]'
  check "$desc: signature verifies with the device key (openssl CLI)" callback_signature_ok "$REC"
}

PV=$(free_port)
gmt_request POST $API/vsms "{\"vsmId\":\"cb1\",\"name\":\"cb\",\"network\":$(vsm_net 127.0.0.1 "$PV"),\"callbackUrl\":\"file:///tmp/x\"}"
expect "callbackUrl file:// refused" 1003 400

# ---- a task's callback, delivered at once ----
R1=$IT_DIR/r1
receiver_start "$R1"
URL1="http://127.0.0.1:$RCV_PORT/platform/callbacks?chsm=$DEVICE_ID&x=1"
async_cb POST $API/vsms "$URL1" "\"vsmId\":\"cb1\",\"name\":\"cb\",\"network\":$(vsm_net 127.0.0.1 "$PV")"
CREATE_TASK=$TASK_ID
check "create: callback delivered" eventually 15 delivered_any "$CREATE_TASK"
check_callback "create callback" "$R1" "$CREATE_TASK" succeeded
check "create callback: operation vsm.create, target cb1" \
  [ "$(jq -r '"\(.operation) \(.target)"' "$REC.body")" = "vsm.create cb1" ]
check "create callback: request-target is the URL's path and query" \
  [ "$(jq -r .path "$REC.json")" = "/platform/callbacks?chsm=$DEVICE_ID&x=1" ]

gmt_request POST $API/vsms/cb1/start '{"callbackUrl":"ftp://127.0.0.1/cb"}'
expect "callbackUrl ftp:// refused" 1003 400
gmt_request POST $API/vsms/cb1/start '{"callbackUrl":42}'
expect "callbackUrl not a string" 1003 400
async_cb POST $API/vsms/cb1/start "$URL1"
START_TASK=$TASK_ID
check "start: callback delivered on the first attempt" eventually 15 delivered "$START_TASK" 1
check_callback "start callback" "$R1" "$START_TASK" succeeded
check "start callback: code 0, message OK" [ "$(jq -c '[.code, .message]' "$REC.body")" = '[0,"OK"]' ]
check "start callback: times ordered" jqt "$REC.body" '.createdAt <= .startedAt and .startedAt <= .finishedAt'
check "start callback: result is the running VSM" jqt "$REC.body" '.result.vsmId == "cb1" and .result.state == "running"'
check "start callback: exactly one POST" [ "$(records "$R1" "$START_TASK" | wc -l)" = 1 ]
gmt_request GET "$API/tasks/$START_TASK"
check "GET /tasks: callback url" [ "$(resp_data .callback.url)" = "$URL1" ]
check "GET /tasks: attempts 1, delivered" jqt "$RESP_BODY" '.data.callback == {"url": .data.callback.url, "attempts": 1, "delivered": true}'
task_ok "a task without callbackUrl" POST $API/vsms/cb1/restart
check "GET /tasks: no callback url" jqt "$RESP_BODY" '.data.callback.url == null and .data.callback.delivered == false'
async_cb POST $API/vsms/cb1/restart "http://127.0.0.1:$RCV_PORT"
check "a URL without a path: callback delivered" eventually 15 delivered "$TASK_ID" 1
check_callback "callback to a URL without a path" "$R1" "$TASK_ID" succeeded
check "... to the request-target /" [ "$(jq -r .path "$REC.json")" = / ]
receiver_stop

# ---- retried after 500s ----
R2=$IT_DIR/r2
receiver_start "$R2" --fail-first 2
URL2="http://127.0.0.1:$RCV_PORT/cb"
async_cb POST $API/vsms/cb1/stop "$URL2"
STOP_TASK=$TASK_ID
check "stop: callback delivered on the third attempt" eventually 30 delivered "$STOP_TASK" 3
check "stop: three POSTs" [ "$(records "$R2" "$STOP_TASK" | wc -l)" = 3 ]
check "stop: the first two were answered 500" \
  [ "$(for r in $(records "$R2" "$STOP_TASK"); do jq -r .status "$R2/$r.json"; done | tr '\n' ' ')" = "500 500 200 " ]
check "stop: the same body every time" \
  [ "$(for r in $(records "$R2" "$STOP_TASK"); do sm3_hex "$R2/$r.body"; done | sort -u | wc -l)" = 1 ]
check "stop: a new nonce every time" \
  [ "$(for r in $(records "$R2" "$STOP_TASK"); do hdr "$R2/$r" X-GMT-Nonce; done | sort -u | wc -l)" = 3 ]
check_callback "stop callback (third attempt)" "$R2" "$STOP_TASK" succeeded
check "stop: every attempt signed" all_signed "$R2" "$STOP_TASK"
receiver_stop

# ---- the receiver is down when the task ends, up later ----
# deferred NAME TARGET BOUND COMMAND...: POST TARGET with a callback to a
# port where nothing listens; once the first attempt failed, COMMAND runs,
# then the receiver comes up on that port: the callback arrives within
# BOUND seconds.
deferred() {
  local name=$1 target=$2 bound=$3; shift 3
  local port id; port=$(free_port)
  async_cb POST "$target" "http://127.0.0.1:$port/$name"
  id=$TASK_ID
  check "$name: first attempt fails (receiver down)" eventually 15 attempted "$id"
  check "$name: not delivered yet" [ "$(task_callback "$id" | cut -d' ' -f2)" = false ]
  "$@"
  receiver_start "$IT_DIR/$name" --port "$port"
  check "$name: delivered once the receiver is up" eventually "$bound" delivered_any "$id"
  check_callback "$name callback" "$IT_DIR/$name" "$id" succeeded
  receiver_stop
}
deferred late $API/vsms/cb1/start 30 sleep 2
# delivery continues across a chsmd restart (a crash)
crash_and_restart() { chsm_kill; chsm_start; }
deferred after-restart $API/vsms/cb1/stop 40 crash_and_restart

# ---- a failed task calls back too ----
R5=$IT_DIR/r5
receiver_start "$R5"
URL5="http://127.0.0.1:$RCV_PORT/failed"
# the receiver itself holds 127.0.0.1:$RCV_PORT: the VSM cannot bind it
task_ok "create busy (its port is taken by another process)" POST $API/vsms \
  "{\"vsmId\":\"busy\",\"name\":\"busy\",\"network\":$(vsm_net 127.0.0.1 "$RCV_PORT")}"
async_cb POST $API/vsms/busy/start "$URL5"
FAIL_TASK=$TASK_ID
check "failed start: callback delivered" eventually 15 delivered_any "$FAIL_TASK"
check_callback "failed-task callback" "$R5" "$FAIL_TASK" failed
check "failed-task callback: code 3009" [ "$(jq -r .code "$REC.body")" = 3009 ]
check "failed-task callback: a message" jqt "$REC.body" '.message | type == "string" and length > 0 and . != "OK"'
gmt_request GET $API/vsms/busy/status
check "the VSM went to fault" [ "$(resp_data .state)" = fault ]
check "... with lastError" jqt "$RESP_BODY" '.data.lastError | type == "string" and length > 0'
receiver_stop

check "SIGTERM stops chsmd cleanly" chsm_stop
it_end
