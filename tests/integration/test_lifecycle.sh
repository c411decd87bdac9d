#!/usr/bin/env bash
# Lifecycle: VSMs with real chsm-vsmd processes through create, details,
# list, start (something listens), status, stop, restart, network and
# token changes, reset, fault (kill -9) and delete (PROFILE.md §7, §8,
# 7.3.x); the CHSM's status and configuration interfaces (7.2.2-7.2.7,
# credentials never shown or logged); metrics, signed and on the
# unauthenticated listener.
. "$(dirname "$0")/lib.sh"
it_begin lifecycle
API=/gmt0088/v1
chsm_init --max-vsms 3
MPORT=$(free_port)
chsm_start --metrics-listen "127.0.0.1:$MPORT"
device_pub_pem
enroll_platform

# json_has FILE JQPATH FIELD...: every field is a key of the object.
json_has() {
  local f=$1 path=$2; shift 2
  for k in "$@"; do jq -e "$path | has(\"$k\")" "$f" >/dev/null || { echo "# missing $path.$k"; return 1; }; done
}
matches() { [[ $1 =~ $2 ]]; }

# ---- create (7.3.12) with network and token ----
P1=$(free_port)
SECRET=$(openssl rand -base64 32)
gmt_request POST $API/vsms "{\"vsmId\":\"v1\",\"name\":\"tenant one\",\"network\":$(vsm_net 127.0.0.1 "$P1"),
  \"token\":{\"tokenId\":\"app\",\"secret\":\"$SECRET\"}}"
expect "create v1" 0 202
check "create: answer signed by the device" response_signature_ok "$LAST_NONCE"
check "create: taskId" [ -n "$(resp_data .taskId)" ]
check "create: operation vsm.create" [ "$(resp_data .operation)" = vsm.create ]
check "create: target v1" [ "$(resp_data .target)" = v1 ]
check "create: state pending" [ "$(resp_data .state)" = pending ]
check "create: message accepted" [ "$(jq -r .message "$RESP_BODY")" = accepted ]
wait_task "$(resp_data .taskId)"
check "create: task succeeded" [ "$TASK_STATE" = succeeded ]
check "create: task code 0" [ "$TASK_CODE" = 0 ]
check "create: task result is the stopped VSM" [ "$(resp_data .result.state)" = stopped ]

# ---- details (7.3.1) ----
gmt_request GET $API/vsms/v1
expect "details of v1" 0 200
check "details: every field of 7.3.1" json_has "$RESP_BODY" .data vsmId name state version createdAt \
  updatedAt stateVersion resources network token keyCount serviceEndpoint
check "details: resources" json_has "$RESP_BODY" .data.resources maxKeys maxSessions memoryMiB
check "details: network" json_has "$RESP_BODY" .data.network ipAddress prefixLength port
check "details: token fields" json_has "$RESP_BODY" .data.token tokenId configured updatedAt
check "details: token without secret" jqt "$RESP_BODY" '.data.token | keys == ["configured","tokenId","updatedAt"]'
check "details: token configured" [ "$(resp_data .token.configured)" = true ]
check "details: tokenId" [ "$(resp_data .token.tokenId)" = app ]
check "details: the secret appears nowhere" bash -c "! grep -qF -- '$SECRET' '$RESP_BODY'"
check "details: name" [ "$(resp_data .name)" = "tenant one" ]
check "details: stopped" [ "$(resp_data .state)" = stopped ]
check "details: keyCount 0" [ "$(resp_data .keyCount)" = 0 ]
check "details: serviceEndpoint" [ "$(resp_data .serviceEndpoint)" = "127.0.0.1:$P1" ]
check "details: network port" [ "$(resp_data .network.port)" = "$P1" ]
check "details: stateVersion is a number" jqt "$RESP_BODY" '.data.stateVersion | type == "number"'
check "a stopped VSM does not listen" not_listening 127.0.0.1 "$P1"
check "a stopped VSM has no process" [ -z "$(vsm_pid v1)" ]

gmt_request GET $API/vsms
expect "list VSMs" 0 200
check "list holds v1 with its details" jqt "$RESP_BODY" '[.data.vsms[] | select(.vsmId == "v1" and .serviceEndpoint != null)] | length == 1'

gmt_request GET $API/vsms/nosuch
expect "details of an unknown VSM" 3001 404
gmt_request POST $API/vsms "{\"vsmId\":\"v1\",\"name\":\"again\",\"network\":$(vsm_net 127.0.0.1 "$(free_port)")}"
expect "create with an existing id" 3002 409
gmt_request POST $API/vsms "{\"vsmId\":\"v9\",\"name\":\"clash\",\"network\":$(vsm_net 127.0.0.1 "$P1")}"
expect "create on another VSM's endpoint" 3009 409

# ---- start, status, stop, restart ----
gmt_request POST $API/vsms/v1/stop
expect "stop a stopped VSM" 3003 409
task_ok "start v1" POST $API/vsms/v1/start
check "start: result state running" [ "$(resp_data .result.state)" = running ]
check "v1 running" vsm_state_is v1 running
check "v1 listens on its endpoint" listening 127.0.0.1 "$P1"
PID1=$(vsm_pid v1)
check "v1 has one chsm-vsmd process" [ "$(printf '%s' "$PID1" | wc -w)" = 1 ]
gmt_request POST $API/vsms/v1/start
expect "start a running VSM" 3003 409

gmt_request GET $API/vsms/v1/status
expect "status of v1 (7.3.2)" 0 200
check "status: every field of 7.3.2" json_has "$RESP_BODY" .data vsmId state uptimeSeconds sessions \
  opsTotal ops cpuPercent memoryMiB stateVersion stateDigest lastError
check "status: running" [ "$(resp_data .state)" = running ]
check "status: stateDigest is 64 hex" matches "$(resp_data .stateDigest)" '^[0-9a-f]{64}$'
check "status: uptimeSeconds a number" jqt "$RESP_BODY" '.data.uptimeSeconds | type == "number" and . >= 0'
check "status: lastError null" jqt "$RESP_BODY" '.data.lastError == null'
DIGEST1=$(resp_data .stateDigest)
SV1=$(resp_data .stateVersion)

task_ok "stop v1" POST $API/vsms/v1/stop
check "v1 stopped" vsm_state_is v1 stopped
check "v1 no longer listens" not_listening 127.0.0.1 "$P1"
check "v1's process ended" proc_gone "$PID1"
gmt_request POST $API/vsms/v1/restart
expect "restart a stopped VSM" 3003 409

task_ok "start v1 again" POST $API/vsms/v1/start
PID1=$(vsm_pid v1)
task_ok "restart v1" POST $API/vsms/v1/restart
check "restart: running" vsm_state_is v1 running
PID1B=$(vsm_pid v1)
check "restart: a new process" [ "$(printf '%s' "$PID1B" | wc -w)" = 1 -a "$PID1B" != "$PID1" ]
check "restart: the old process ended" proc_gone "$PID1"
check "restart: listens" listening 127.0.0.1 "$P1"

# ---- create with start, and with a generated id ----
P2=$(free_port)
task_ok "create v2 with start" POST $API/vsms "{\"vsmId\":\"v2\",\"name\":\"two\",\"network\":$(vsm_net 127.0.0.2 "$P2"),\"start\":true}"
check "v2 running after create" vsm_state_is v2 running
check "v2 listens on 127.0.0.2" listening 127.0.0.2 "$P2"
check "v2 has no token" [ "$(resp_data .token.configured)" = false ]

P3=$(free_port)
gmt_request POST $API/vsms "{\"name\":\"generated\",\"network\":$(vsm_net 127.0.0.1 "$P3")}"
expect "create without vsmId" 0 202
GEN=$(resp_data .target)
check "generated id is valid ($GEN)" matches "$GEN" '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'
wait_task "$(resp_data .taskId)"
check "generated: task succeeded" [ "$TASK_STATE" = succeeded ]
check "generated: result vsmId" [ "$(resp_data .result.vsmId)" = "$GEN" ]
check "generated: details readable and stopped" vsm_state_is "$GEN" stopped
gmt_request POST $API/vsms "{\"name\":\"fourth\",\"network\":$(vsm_net 127.0.0.1 "$(free_port)")}"
expect "a fourth VSM on a CHSM of 3" 3004 409
gmt_request GET $API/chsm
check "7.2.1: capacity.maxVsms 3, vsmCount 3" jqt "$RESP_BODY" '.data.capacity.maxVsms == 3 and .data.vsmCount == 3'

# ---- network (7.3.3) ----
gmt_request GET "$API/vsms/$GEN"
SVG=$(resp_data .stateVersion)
P4=$(free_port)
gmt_request PUT "$API/vsms/$GEN/network" "$(vsm_net 127.0.0.1 "$P4")"
expect "network of a stopped VSM" 0 200
check "network: answer has the new port" [ "$(resp_data .network.port)" = "$P4" ]
check "network: serviceEndpoint follows" [ "$(resp_data .serviceEndpoint)" = "127.0.0.1:$P4" ]
check "network: applies now on a stopped VSM" [ "$(resp_data .applied)" = now ]
check "network: stateVersion grew" [ "$(resp_data .stateVersion)" -gt "$SVG" ]
task_ok "start the generated VSM" POST "$API/vsms/$GEN/start"
check "generated VSM listens on the new port" listening 127.0.0.1 "$P4"
check "generated VSM not on the old port" not_listening 127.0.0.1 "$P3"

gmt_request PUT $API/vsms/v1/network "$(vsm_net 127.0.0.2 "$P2")"
expect "network onto v2's endpoint" 3009 409
P5=$(free_port)
gmt_request PUT $API/vsms/v1/network "$(vsm_net 127.0.0.1 "$P5")"
expect "network of a running VSM" 0 200
check "network (running): applied live" [ "$(resp_data .applied)" = live ]
check "network (running): stored" [ "$(resp_data .network.port)" = "$P5" ]
check "network (running): serves the new endpoint at once" listening 127.0.0.1 "$P5"
check "network (running): left the old endpoint" not_listening 127.0.0.1 "$P1"
task_ok "restart v1 after the network change" POST $API/vsms/v1/restart
check "v1 listens on the new endpoint" listening 127.0.0.1 "$P5"
check "v1 left the old endpoint" not_listening 127.0.0.1 "$P1"

# ---- token (7.3.4) ----
gmt_request GET $API/vsms/v1/status
SV1=$(resp_data .stateVersion); DIGEST1=$(resp_data .stateDigest)
head -c 24 /dev/urandom > "$IT_DIR/secret2.bin"
SECRET2=$(base64 -w0 "$IT_DIR/secret2.bin")
printf '%s\n' "$SECRET" > "$IT_DIR/secret1.b64"; printf '%s\n' "$SECRET2" > "$IT_DIR/secret2.b64"
check "v1 (running) serves its first token" eval 'vsm_tool "$P5" app "$IT_DIR/secret1.b64" random --bytes 8 >/dev/null'
gmt_request PUT $API/vsms/v1/token "{\"tokenId\":\"app2\",\"secret\":\"$SECRET2\"}"
expect "token change" 0 200
# the VSM reads its token at every authentication (docs/vsm.md)
check "token (running VSM): applied now" [ "$(resp_data .applied)" = now ]
check "token (running VSM): a new session uses the new token" \
  eval 'vsm_tool "$P5" app2 "$IT_DIR/secret2.b64" random --bytes 8 >/dev/null'
check "token (running VSM): the old token is refused" \
  eval '! vsm_tool "$P5" app "$IT_DIR/secret1.b64" random --bytes 8 >/dev/null 2>&1'
check "token: tokenId" [ "$(resp_data .token.tokenId)" = app2 ]
check "token: answer without the secret" bash -c "! grep -qF -- '$SECRET2' '$RESP_BODY'"
gmt_request GET $API/vsms/v1/status
check "token: stateVersion grew" [ "$(resp_data .stateVersion)" -gt "$SV1" ]
check "token: stateDigest changed" [ "$(resp_data .stateDigest)" != "$DIGEST1" ]
gmt_request PUT "$API/vsms/$GEN/token" "{\"tokenId\":\"app2\",\"secret\":\"$SECRET2\"}"
expect "the same token on the generated VSM" 0 200
digest_of() { gmt_request GET "$API/vsms/$1/status"; resp_data .stateDigest; }
check "stateDigest: same token and keys, same digest (other id, name, network)" \
  [ "$(digest_of v1)" = "$(digest_of "$GEN")" ]
check "stateDigest: another token, another digest" [ "$(digest_of v1)" != "$(digest_of v2)" ]
gmt_request PUT $API/vsms/v1/token '{"tokenId":"app2","secret":"c2hvcnQ="}'
expect "token secret of 5 bytes" 1003 400

# ---- reset (7.3.10) from running ----
gmt_request GET $API/vsms/v1/status
SV1=$(resp_data .stateVersion); DIGEST1=$(resp_data .stateDigest)
task_ok "reset running v1" POST $API/vsms/v1/reset
gmt_request GET $API/vsms/v1
check "reset: stopped" [ "$(resp_data .state)" = stopped ]
check "reset: token gone" [ "$(resp_data .token.configured)" = false ]
check "reset: keeps its network" [ "$(resp_data .network.port)" = "$P5" ]
check "reset: keeps its name" [ "$(resp_data .name)" = "tenant one" ]
check "reset: no longer listens" not_listening 127.0.0.1 "$P5"
gmt_request GET $API/vsms/v1/status
check "reset: stateVersion grew" [ "$(resp_data .stateVersion)" -gt "$SV1" ]
check "reset: stateDigest changed" [ "$(resp_data .stateDigest)" != "$DIGEST1" ]
check "reset: no process" [ -z "$(vsm_pid v1)" ]
check "stateDigest: no token and no keys, same digest as v2's" [ "$(digest_of v1)" = "$(digest_of v2)" ]

# ---- fault: the VSM's process dies ----
PID2=$(vsm_pid v2)
check "v2 has a process" [ -n "$PID2" ]
kill -KILL "$PID2"
check "killed VSM goes to fault" eventually 10 vsm_state_is v2 fault
gmt_request GET $API/vsms/v2/status
check "fault: lastError set ($(resp_data .lastError))" jqt "$RESP_BODY" '.data.lastError | type == "string" and length > 0'
sleep 1.5
check "fault: not restarted" vsm_state_is v2 fault
check "fault: no process" [ -z "$(vsm_pid v2)" ]
check "fault: nothing listens" not_listening 127.0.0.2 "$P2"

# ---- 7.2.2 and 7.2.3 agree with the VSMs ----
gmt_request GET $API/vsms
cp "$RESP_BODY" "$IT_DIR/list.json"
count_state() { jq "[.data.vsms[] | select(.state == \"$1\")] | length" "$IT_DIR/list.json"; }
gmt_request GET $API/chsm/status
expect "CHSM status (7.2.2)" 0 200
check "7.2.2: every field" json_has "$RESP_BODY" .data state uptimeSeconds time cpuPercent memoryUsedMiB \
  memoryTotalMiB diskUsedMiB diskTotalMiB vsms tasksRunning ntp
check "7.2.2: CHSM running" [ "$(resp_data .state)" = running ]
check "7.2.2: total 3" [ "$(resp_data .vsms.total)" = 3 ]
check "7.2.2: running as listed" [ "$(resp_data .vsms.running)" = "$(count_state running)" ]
check "7.2.2: running 1" [ "$(resp_data .vsms.running)" = 1 ]
check "7.2.2: fault 1" [ "$(resp_data .vsms.fault)" = 1 ]
gmt_request GET $API/chsm/status/all
expect "all status (7.2.3)" 0 200
check "7.2.3: chsm, vsms, config" json_has "$RESP_BODY" .data chsm vsms config
check "7.2.3: chsm counts as 7.2.2" jqt "$RESP_BODY" '.data.chsm.vsms == {"total":3,"running":1,"fault":1}'
check "7.2.3: one status per VSM" [ "$(jq '.data.vsms | length' "$RESP_BODY")" = 3 ]
check "7.2.3: v2 in fault with lastError" jqt "$RESP_BODY" '.data.vsms[] | select(.vsmId == "v2") | .state == "fault" and .lastError != null'
check "7.2.3: states as listed" [ "$(jq -c '[.data.vsms[] | {vsmId, state}] | sort_by(.vsmId)' "$RESP_BODY")" = \
  "$(jq -c '[.data.vsms[] | {vsmId, state}] | sort_by(.vsmId)' "$IT_DIR/list.json")" ]
check "7.2.3: platform key fingerprint" [ "$(resp_data .config.platformKeyFingerprint)" = "$SIGN_KEY_ID" ]

task_ok "start v2 from fault" POST $API/vsms/v2/start
check "v2 running again" vsm_state_is v2 running
check "v2 listens again" listening 127.0.0.2 "$P2"
gmt_request GET $API/vsms/v2/status
check "v2: lastError cleared after start" jqt "$RESP_BODY" '.data.lastError == null'

kill -KILL "$(vsm_pid v2)"
check "v2 in fault again" eventually 10 vsm_state_is v2 fault
task_ok "restart v2 from fault" POST $API/vsms/v2/restart
check "v2 listens after restart from fault" listening 127.0.0.2 "$P2"
kill -TERM "$(vsm_pid v2)"
check "v2 in fault once more (its process ended on a SIGTERM chsmd did not send)" eventually 10 vsm_state_is v2 fault
task_ok "stop v2 from fault" POST $API/vsms/v2/stop
check "v2 stopped" vsm_state_is v2 stopped
task_ok "start v2" POST $API/vsms/v2/start

# ---- delete (7.3.13) ----
task_ok "delete the generated VSM (running)" DELETE "$API/vsms/$GEN"
check "delete: result zeroized" [ "$(resp_data .result.zeroized)" = true ]
check "delete: result vsmId" [ "$(resp_data .result.vsmId)" = "$GEN" ]
gmt_request GET "$API/vsms/$GEN"
expect "deleted VSM is gone" 3001 404
check "deleted VSM's process ended" [ -z "$(vsm_pid "$GEN")" ]
check "deleted VSM no longer listens" not_listening 127.0.0.1 "$P4"
gmt_request DELETE "$API/vsms/$GEN"
expect "delete it again" 3001 404

# ---- an IPv6 VSM ----
P6=$(free_port)
task_ok "create v6 on ::1 (written long), started" POST $API/vsms \
  "{\"vsmId\":\"v6\",\"name\":\"six\",\"network\":$(vsm_net 0:0:0:0:0:0:0:1 "$P6"),\"start\":true}"
check "v6: address in canonical form" [ "$(resp_data .result.network.ipAddress)" = ::1 ]
check "v6: serviceEndpoint [::1]:port" [ "$(resp_data .result.serviceEndpoint)" = "[::1]:$P6" ]
check "v6 listens on ::1" listening ::1 "$P6"
gmt_request PUT $API/vsms/v1/network "$(vsm_net ::0:1 "$P6")"
expect "another VSM onto v6's endpoint written otherwise" 3009 409
task_ok "delete v6 (running)" DELETE $API/vsms/v6
check "v6 no longer listens" not_listening ::1 "$P6"

# ---- CHSM configuration (7.2.4-7.2.7) ----
NETCFG='{"hostname":"chsm-it","interfaces":[{"name":"eth0","address":"10.1.2.3/24","gateway":"10.1.2.1"}],"dns":["10.1.2.53"]}'
gmt_request PUT $API/chsm/network "$NETCFG"
expect "CHSM network (7.2.4)" 0 200
gmt_request PUT $API/chsm/network '{"hostname":"chsm-it","interfaces":[{"name":"eth0","address":"10.1.2.300/24"}]}'
expect "CHSM network with a bad address" 1003 400
gmt_request PUT $API/chsm/ntp '{"servers":["127.0.0.1","localhost"],"enabled":true}'
expect "NTP (7.2.5)" 0 200
IMG_AUTH="Bearer img-$(openssl rand -hex 16)"
gmt_request PUT $API/chsm/image-upload-address "{\"url\":\"https://uploader:pw-$(openssl rand -hex 8)@objects.example/bucket/chsm?sig=q$(openssl rand -hex 8)\",
  \"headers\":{\"Authorization\":\"$IMG_AUTH\"}}"
expect "image upload address (7.2.6)" 0 200
UPLOAD_URL_SECRETS=$(jq -r '.url' "$IT_DIR/req.body" | sed -n 's|.*:\(pw-[0-9a-f]*\)@.*sig=\(q[0-9a-f]*\)|\1 \2|p')
check "7.2.6: answer without the header value" bash -c "! grep -qF -- '$IMG_AUTH' '$RESP_BODY'"
LOG_AUTH="Token log-$(openssl rand -hex 16)"
gmt_request PUT $API/chsm/log-upload-address "{\"url\":\"syslog+tcp://127.0.0.1:6514\",\"level\":\"warning\",
  \"headers\":{\"X-Api-Key\":\"$LOG_AUTH\"}}"
expect "log upload address (7.2.7)" 0 200
gmt_request PUT $API/chsm/log-upload-address '{"url":"ftp://127.0.0.1/","level":"info"}'
expect "log upload address with a bad scheme" 1003 400

gmt_request GET $API/chsm/status/all
expect "all status after configuration" 0 200
check "7.2.3: network as set" [ "$(jq -cS .data.config.network "$RESP_BODY")" = "$(jq -cS . <<<"$NETCFG")" ]
check "7.2.3: NTP as set" jqt "$RESP_BODY" '.data.config.ntp == {"servers":["127.0.0.1","localhost"],"enabled":true}'
check "7.2.3: image upload URL without credentials" \
  [ "$(resp_data .config.imageUploadAddress.url)" = https://objects.example/bucket/chsm ]
check "7.2.3: image upload header names" jqt "$RESP_BODY" '.data.config.imageUploadAddress.headerNames == ["Authorization"]'
check "7.2.3: log upload address" [ "$(resp_data .config.logUploadAddress.url)" = syslog+tcp://127.0.0.1:6514 ]
check "7.2.3: log level" [ "$(resp_data .config.logUploadAddress.level)" = warning ]
for s in "$IMG_AUTH" "$LOG_AUTH" $UPLOAD_URL_SECRETS; do
  check "7.2.3 does not show '${s:0:10}…'" bash -c "! grep -qF -- '$s' '$RESP_BODY'"
  check "the chsmd log does not hold '${s:0:10}…'" bash -c "! grep -qF -- '$s' '$CHSMD_LOG'"
done
check "the chsmd log does not hold a token secret" bash -c "! grep -qF -e '$SECRET' -e '$SECRET2' '$CHSMD_LOG'"
check "request log: 7.2.4 logged with target chsm" grep -q 'interface=7.2.4 method=PUT target=chsm ' "$CHSMD_LOG"
check "request log: 7.3.3 logged with its VSM" grep -q 'interface=7.3.3 method=PUT target=v1 ' "$CHSMD_LOG"

# ---- metrics ----
gmt_request GET $API/metrics
check "metrics, signed request: 200" [ "$RESP_STATUS" = 200 ]
check "metrics: answer signed by the device" response_signature_ok "$LAST_NONCE"
check "metrics: Prometheus text" bash -c "grep -i '^content-type:' '$RESP_HEADERS' | grep -q 'text/plain'"
cp "$RESP_BODY" "$IT_DIR/metrics.txt"
metric() { awk -v k="$1" '$1 == k { print $2 }' "$IT_DIR/metrics.txt"; }
check "metrics: creates counted" [ "$(metric 'chsm_requests_total{interface="7.3.12",code="0"}')" -ge 3 ]
check "metrics: 3001 counted" [ "$(metric 'chsm_requests_total{interface="7.3.1",code="3001"}')" -ge 1 ]
check "metrics: 3003 counted" [ "$(metric 'chsm_requests_total{interface="7.3.7",code="3003"}')" -ge 1 ]
check "metrics: histogram type" grep -q '^# TYPE chsm_request_duration_seconds histogram' "$IT_DIR/metrics.txt"
check "metrics: +Inf bucket equals count" [ "$(metric 'chsm_request_duration_seconds_bucket{le="+Inf"}')" = \
  "$(metric chsm_request_duration_seconds_count)" ]
check "metrics: sum present" [ -n "$(metric chsm_request_duration_seconds_sum)" ]
check "metrics: VSMs running" [ "$(metric 'chsm_vsms{state="running"}')" = 1 ]
check "metrics: VSMs stopped" [ "$(metric 'chsm_vsms{state="stopped"}')" = 1 ]
check "metrics: VSMs in fault" [ "$(metric 'chsm_vsms{state="fault"}')" = 0 ]
check "metrics: tasks succeeded" [ "$(metric 'chsm_tasks{state="succeeded"}')" -ge 10 ]
check "metrics: tasks failed" [ "$(metric 'chsm_tasks{state="failed"}')" = 0 ]
GMT_OMIT=X-GMT-Signature gmt_request GET $API/metrics
expect "metrics without a signature" 2001 401

PLAIN=$(curl -sS -D "$IT_DIR/m.h" "http://127.0.0.1:$MPORT/metrics")
check "metrics listener: plain HTTP, no authentication" grep -q '^HTTP/1.1 200' "$IT_DIR/m.h"
check "metrics listener: VSM gauge" grep -q '^chsm_vsms{state="running"} 1$' <<<"$PLAIN"
check "metrics listener: request counter" grep -q '^chsm_requests_total{interface="metrics",code="0"} ' <<<"$PLAIN"
check "metrics listener: tasks gauge" grep -q '^chsm_tasks{state="succeeded"} ' <<<"$PLAIN"
check "metrics listener: serves nothing else" \
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT$API/chsm")" = 404 ]

PID2=$(vsm_pid v2)
check "SIGTERM stops chsmd cleanly" chsm_stop
check "v2's process ended with chsmd" proc_gone "$PID2"
it_end
