#!/usr/bin/env bash
# Reboot (PROFILE.md 7.2.11): the management service and the VSMs stop
# cleanly and come back under the same launcher (`chsmd run`, whose pid
# stays); VSMs that ran run again (new processes, same keys), stopped ones
# stay stopped; a mutation meanwhile gets 5003; the task and its signed
# callback succeed after the return, with a new bootTime. --reboot-pause-ms
# (test only) holds the new service in state rebooting, serving, for 20 s:
# far longer than the few requests the test makes meanwhile.
. "$(dirname "$0")/lib.sh"
it_begin reboot
API=/gmt0088/v1
chsm_init --max-vsms 4
chsm_start --reboot-pause-ms 20000
device_pub_pem
enroll_platform
LAUNCHER=$CHSMD_PID
SERVICE=$(service_pid)
check "the launcher runs the service as its child ($SERVICE)" [ -n "$SERVICE" ]

P1=$(free_port); P2=$(free_port)
head -c 24 /dev/urandom | base64 -w0 > "$IT_DIR/tok.b64"
task_ok "create r1 (started) with a token" POST $API/vsms "{\"vsmId\":\"r1\",\"name\":\"runs\",
  \"network\":$(vsm_net 127.0.0.1 "$P1"),\"token\":{\"tokenId\":\"app\",\"secret\":\"$(cat "$IT_DIR/tok.b64")\"},\"start\":true}"
task_ok "create r2 (stopped)" POST $API/vsms "{\"vsmId\":\"r2\",\"name\":\"stays\",\"network\":$(vsm_net 127.0.0.1 "$P2")}"
check "r1: a signing key (vsmtool)" vsm_tool "$P1" app "$IT_DIR/tok.b64" keygen --index 1
vsm_tool "$P1" app "$IT_DIR/tok.b64" pubkey --index 1 > "$IT_DIR/k.pem"
VSM_BEFORE=$(vsm_pid r1)
check "r1 runs ($VSM_BEFORE)" [ -n "$VSM_BEFORE" ]
gmt_request GET $API/chsm
BOOT1=$(resp_data .bootTime)

mkdir -p "$IT_DIR/cb"
receiver_start "$IT_DIR/cb"
gmt_request POST $API/chsm/reboot "{\"callbackUrl\":\"http://127.0.0.1:$RCV_PORT/cb\"}"
expect "reboot: accepted" 0 202
TASK=$(resp_data .taskId)
check "... as chsm.reboot" [ "$(resp_data .operation)" = chsm.reboot ]
# Accepted means rebooting: mutations are refused at once (old service)...
gmt_request PUT $API/chsm/ntp '{"servers":["127.0.0.1"],"enabled":false}'
expect "a mutation right after the reboot was accepted" 5003 503
# ... and by the new service while it resumes (held by --reboot-pause-ms).
new_service_up() { local s; s=$(service_pid); [ -n "$s" ] && [ "$s" != "$SERVICE" ]; }
check "a new service process starts" eventually 30 new_service_up
rebooting_new() {
  gmt_request GET $API/chsm/status && [ "$(resp_data .state)" = rebooting ] &&
    gmt_request GET $API/chsm && [ "$(resp_data .bootTime)" != "$BOOT1" ]
}
gmt_request PUT $API/chsm/ntp '{"servers":["127.0.0.1"],"enabled":false}'
expect "a mutation while the new service resumes" 5003 503
check "the new service answers GETs in state rebooting" eventually 15 rebooting_new
gmt_request GET $API/tasks/$TASK
check "the task is still running meanwhile" [ "$(resp_data .state)" = running ]

check "the reboot task ends" wait_task "$TASK"
check "... succeeded (got $TASK_STATE $TASK_CODE)" [ "$TASK_STATE" = succeeded ] && [ "$TASK_CODE" = 0 ]
BOOT2=$(resp_data .result.bootTime)
check "... with the new bootTime ($BOOT1 -> $BOOT2)" [ -n "$BOOT2" ] && [ "$BOOT2" != "$BOOT1" ]
gmt_request GET $API/chsm
check "7.2.1 bootTime is the new one" [ "$(resp_data .bootTime)" = "$BOOT2" ]
gmt_request GET $API/chsm/status
check "the CHSM runs again" [ "$(resp_data .state)" = running ]
check "the launcher is the same process" [ "$CHSMD_PID" = "$LAUNCHER" ] && kill -0 "$LAUNCHER"
check "the old service process is gone" proc_gone "$SERVICE"
check "r1 runs again" vsm_state_is r1 running
VSM_AFTER=$(vsm_pid r1)
check "... in a new process ($VSM_BEFORE -> $VSM_AFTER)" [ -n "$VSM_AFTER" ] && [ "$VSM_AFTER" != "$VSM_BEFORE" ]
check "... and the old one is gone" proc_gone "$VSM_BEFORE"
check "r2 stays stopped" vsm_state_is r2 stopped
check "r2 has no process" [ -z "$(vsm_pid r2)" ]
head -c 3000 /dev/urandom > "$IT_DIR/doc"
check "r1's key signs after the reboot (vsmtool)" eval \
  'vsm_tool "$P1" app "$IT_DIR/tok.b64" sign --index 1 --in "$IT_DIR/doc" > "$IT_DIR/sig.b64"'
base64 -d < "$IT_DIR/sig.b64" > "$IT_DIR/sig.der"
check "openssl verifies it with the key's public part from before" eval \
  'openssl dgst -sm3 -verify "$IT_DIR/k.pem" -sigopt distid:$DISTID -signature "$IT_DIR/sig.der" "$IT_DIR/doc" | grep -q "Verified OK"'
cb_done() { [ -n "$(records "$IT_DIR/cb" "$TASK")" ]; }
check "the callback arrived" eventually 30 cb_done
R=$IT_DIR/cb/$(records "$IT_DIR/cb" "$TASK" | head -n 1)
check "... saying succeeded, chsm.reboot" jqt "$R.body" '.state == "succeeded" and .operation == "chsm.reboot" and .code == 0'
check "... signed with the device key" callback_signature_ok "$R"
gmt_request PUT $API/chsm/ntp '{"servers":["127.0.0.1"],"enabled":false}'
expect "mutations are served again" 0 200

# A second reboot, without a callback, works the same.
task_ok "a second reboot" POST $API/chsm/reboot
check "r1 runs after it too" vsm_state_is r1 running
receiver_stop
check "SIGTERM stops the launcher and its service cleanly" chsm_stop
it_end
