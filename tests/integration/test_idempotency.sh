#!/usr/bin/env bash
# Idempotency keys (PROFILE.md §5), on requests signed by the openssl CLI:
# a repeated POST/PUT/DELETE (new nonce and timestamp, same key, method,
# target and body bytes) gets the first answer again, byte for byte, and
# nothing is done twice, also when both arrive at once and across SIGTERM
# and SIGKILL restarts; the key with any other request is 3010; a malformed
# key is 2001.
. "$(dirname "$0")/lib.sh"
it_begin idempotency

F=/gmt0088/v1
# tasks_total: every task the CHSM holds, from the metrics.
tasks_total() { gmt_request GET $F/metrics; awk '/^chsm_tasks\{/ { n += $2 } END { print n + 0 }' "$RESP_BODY"; }
vsm_count() { gmt_request GET $F/vsms; jq '.data.vsms | length' "$RESP_BODY"; }
# same_answer FILE: the last answer's body is FILE's, byte for byte.
same_answer() { cmp -s "$1" "$RESP_BODY"; }

chsm_init --max-vsms 4
chsm_start
device_pub_pem
enroll_platform
P1=$(free_port)
while P2=$(free_port); [ "$P2" = "$P1" ]; do :; done
B1="{\"vsmId\":\"i1\",\"name\":\"one\",\"network\":$(vsm_net 127.0.0.1 "$P1")}"

# ---- a POST repeated ----
N0=$(tasks_total)
GMT_IDEM=create-i1 gmt_request POST $F/vsms "$B1"
expect_signed "POST /vsms with an idempotency key" 0 202
cp "$RESP_BODY" "$IT_DIR/create.json"
T1=$(resp_data .taskId)
GMT_IDEM=create-i1 gmt_request POST $F/vsms "$B1"
expect_signed "the same request again at once (new nonce and timestamp)" 0 202
check "the first answer, byte for byte" same_answer "$IT_DIR/create.json"
wait_task "$T1"
check "the task succeeds" [ "$TASK_STATE" = succeeded ]
GMT_IDEM=create-i1 gmt_request POST $F/vsms "$B1"
expect_signed "the same request after the task ended" 0 202
check "still the first answer (same taskId)" same_answer "$IT_DIR/create.json"
check "one task was made" [ "$(tasks_total)" = $((N0 + 1)) ]
check "one VSM was made" [ "$(vsm_count)" = 1 ]

# ---- the key with another request ----
B2="{\"vsmId\":\"i2\",\"name\":\"two\",\"network\":$(vsm_net 127.0.0.1 "$P2")}"
GMT_IDEM=create-i1 gmt_request POST $F/vsms "$B2"
expect_signed "the key with another body" 3010 409
gmt_request GET $F/vsms/i2
expect_signed "... which was not acted on" 3001 404
GMT_IDEM=create-i1 gmt_request POST "$F/vsms?x=1" "$B1"
expect_signed "the key with another target (a query added)" 3010 409
GMT_IDEM=create-i1 gmt_request DELETE $F/vsms/i1
expect_signed "the key with another method and target" 3010 409
GMT_IDEM=create-i1 gmt_request POST $F/vsms "${B1/\"name\":/\"name\": }"
expect_signed "the key with the same JSON in other bytes" 3010 409
GMT_IDEM=create-i1b gmt_request POST $F/vsms "$B1"
expect_signed "the same request under another key is a new request" 3002 409
check "still one VSM and one task" eval '[ "$(vsm_count)/$(tasks_total)" = "1/$((N0 + 1))" ]'

# ---- keys: 1 to 64 characters ----
GMT_IDEM=$(printf 'k%.0s' $(seq 65)) gmt_request POST $F/vsms/i1/reset
expect_signed "a key of 65 characters" 2001 401
GMT_IDEM=k gmt_request POST $F/vsms/nope/start
expect_signed "a key of 1 character is honoured" 3001 404
GMT_IDEM=$(printf 'K%.0s' $(seq 64)) gmt_request POST $F/vsms/nope/stop
expect_signed "a key of 64 characters is honoured" 3001 404
GMT_IDEM=$(printf 'K%.0s' $(seq 64)) gmt_request POST $F/vsms/nope/start
expect_signed "... and recorded (another target: 3010)" 3010 409

# ---- the first answer is the answer, even an error ----
GMT_IDEM=start-later gmt_request POST $F/vsms/i2/start
expect_signed "start an unknown VSM under a key" 3001 404
cp "$RESP_BODY" "$IT_DIR/start-later.json"
GMT_IDEM=create-i2 gmt_request POST $F/vsms "$B2"
expect_signed "create i2" 0 202
wait_task "$(resp_data .taskId)"
GMT_IDEM=start-later gmt_request POST $F/vsms/i2/start
expect_signed "the repeated start gets the first answer" 3001 404
check "... byte for byte, and i2 was not started" \
  eval 'same_answer "$IT_DIR/start-later.json" && vsm_state_is i2 stopped'

# ---- a PUT repeated ----
TOKEN="{\"tokenId\":\"tok\",\"secret\":\"$(openssl rand -base64 32)\"}"
GMT_IDEM=token-i1 gmt_request PUT $F/vsms/i1/token "$TOKEN"
expect_signed "PUT a token with a key" 0 200
cp "$RESP_BODY" "$IT_DIR/token.json"
SV=$(resp_data .stateVersion)
GMT_IDEM=token-i1 gmt_request PUT $F/vsms/i1/token "$TOKEN"
expect_signed "the same PUT again" 0 200
check "the first answer, byte for byte" same_answer "$IT_DIR/token.json"
gmt_request GET $F/vsms/i1
check "the token was set once (stateVersion $SV)" [ "$(resp_data .stateVersion)" = "$SV" ]
GMT_IDEM=token-i1 gmt_request PUT $F/vsms/i1/token "{\"tokenId\":\"tok\",\"secret\":\"$(openssl rand -base64 32)\"}"
expect_signed "the key with another secret" 3010 409

# ---- two at once ----
B3="{\"vsmId\":\"i3\",\"name\":\"three\",\"network\":$(vsm_net 127.0.0.2 "$P1")}"
RACERS=()
for w in a b; do
  ( trap - EXIT; IT_DIR=$IT_DIR/race-$w; mkdir -p "$IT_DIR"
    GMT_IDEM=create-i3 gmt_request POST $F/vsms "$B3" ) &
  RACERS+=($!)
done
wait "${RACERS[@]}"
check "two at once: both accepted" \
  jqt "$IT_DIR/race-a/resp.body" '.code == 0 and .data.taskId != null'
check "two at once: the same answer" cmp -s "$IT_DIR/race-a/resp.body" "$IT_DIR/race-b/resp.body"
wait_task "$(jq -r .data.taskId "$IT_DIR/race-a/resp.body")"
check "two at once: one VSM more" [ "$(vsm_count)" = 3 ]

# ---- records survive restarts ----
for stop in chsm_stop chsm_kill; do
  $stop
  chsm_start
  GMT_IDEM=create-i1 gmt_request POST $F/vsms "$B1"
  expect_signed "POST repeated after $stop and a restart" 0 202
  check "the first answer, byte for byte ($stop)" same_answer "$IT_DIR/create.json"
  GMT_IDEM=token-i1 gmt_request PUT $F/vsms/i1/token "$TOKEN"
  check "PUT repeated after $stop: the first answer" same_answer "$IT_DIR/token.json"
  GMT_IDEM=create-i1 gmt_request POST $F/vsms "$B2"
  expect_signed "the key with another body after $stop" 3010 409
done

# ---- a DELETE repeated ----
GMT_IDEM=delete-i1 gmt_request DELETE $F/vsms/i1
expect_signed "DELETE with a key" 0 202
cp "$RESP_BODY" "$IT_DIR/delete.json"
wait_task "$(resp_data .taskId)"
check "the delete succeeds" [ "$TASK_STATE" = succeeded ]
GMT_IDEM=delete-i1 gmt_request DELETE $F/vsms/i1
expect_signed "the same DELETE after the VSM is gone" 0 202
check "the first answer, byte for byte" same_answer "$IT_DIR/delete.json"
check "SIGTERM stops chsmd cleanly" chsm_stop
it_end
