#!/usr/bin/env bash
# Errors (PROFILE.md §3, §6, §8, §9, Appendix A), each with its exact code
# and HTTP status, on requests signed by the openssl CLI: routes (1004,
# 1005 with Allow), bodies (1006, 1007, 1001), fields (1002, 1003) for every
# interface that takes them, VSMs (3001-3005, 3009), tasks (3006), the image
# upload address (3007), image tasks failing to upload or download
# (4004/4005), the interfaces not implemented yet (5000). Every
# error answer has a message and a requestId and no data; no secret sent in
# a request shows in an answer or in the chsmd log.
. "$(dirname "$0")/lib.sh"
it_begin errors

F=/gmt0088/v1
# secret_b64 N: base64 of N random bytes without '/' or '+', so that it would
# be found verbatim wherever it leaked, JSON-escaped or not. Remembered in a
# file, since it is mostly called in a command substitution.
SECRETS=$IT_DIR/secrets
: > "$SECRETS"
secret_b64() {
  local s
  while s=$(openssl rand -base64 "$1" | tr -d '\n'); [[ $s == *[/+]* ]]; do :; done
  printf '%s\n' "$s" >> "$SECRETS"
  printf '%s' "$s"
}
# no_secret_in FILE...: none of the secrets sent so far is in the files.
no_secret_in() { ! grep -qF -f "$SECRETS" "$@"; }
# err DESC CODE STATUS METHOD TARGET [BODY]: a signed request gets that
# error, in an error envelope, without any secret sent so far. The device
# signature of every kind of answer is test_auth's; here only some are
# verified (expect_signed), and the nonce and timestamp are made without
# forking, to keep the many cases fast.
err() {
  local desc=$1 code=$2 status=$3 why="" nonce; shift 3
  printf -v nonce 'e%08x%08x' "$SRANDOM" "$SRANDOM"
  GMT_NONCE=${GMT_NONCE:-$nonce} GMT_TS=${GMT_TS:-$((${EPOCHREALTIME/[.,]/} / 1000))} \
    gmt_request "$@" </dev/null
  expect "$desc" "$code" "$status"
  error_envelope_ok || why="not an error envelope"
  no_secret_in "$RESP_BODY" "$RESP_HEADERS" || why="a request secret is in the answer"
  [ -z "$why" ] || { IT_FAIL=$((IT_FAIL + 1)); echo "not ok - $desc: $why"; }
}
# err_table CODE STATUS: one request a line of stdin, "DESC|METHOD|TARGET|BODY".
err_table() {
  local desc method target body
  while IFS='|' read -r desc method target body; do
    [ -n "$desc" ] && err "$desc" "$1" "$2" "$method" "$target" "$body"
  done
}
allow_is() { [ "$(resp_header Allow | tr -d ' ' | tr ',' '\n' | sort | paste -sd,)" = "$1" ]; }
rep() { printf "%$2s" '' | tr ' ' "$1"; }
HEX64=$(openssl rand -hex 32)
DL="{\"url\":\"https://images.example/v1.img\",\"sm3\":\"$HEX64\"}"

chsm_init --max-vsms 2
chsm_start --log-level debug
device_pub_pem
enroll_platform

# ---- routes (§3): 1004, 1005 with Allow ----
while IFS='|' read -r desc method target code status allow; do
  [ -n "$desc" ] || continue
  err "$desc" "$code" "$status" "$method" "$target"
  [ -z "$allow" ] || check "$desc: Allow names $allow" allow_is "$allow"
done <<EOF
unknown path|GET|$F/nope|1004|404|
the base path itself|GET|$F|1004|404|
a path outside the base|GET|/other|1004|404|
another API version|GET|/gmt0088/v2/chsm|1004|404|
a known path with a trailing slash|GET|$F/chsm/|1004|404|
below a VSM|GET|$F/vsms/v1/nope|1004|404|
DELETE on 7.2.1|DELETE|$F/chsm|1005|405|GET
PUT on the VSM list|PUT|$F/vsms|1005|405|GET,POST
POST on 7.3.1|POST|$F/vsms/v1|1005|405|DELETE,GET
GET on 7.3.7|GET|$F/vsms/v1/start|1005|405|POST
POST on 7.4.2|POST|$F/auth/platform-key|1005|405|PUT
EOF
gmt_send DELETE $F/chsm /dev/null
expect_signed "wrong method, unsigned: routing comes before authentication" 1005 405 ""
check "unsigned 1005: Allow names GET" allow_is GET
gmt_send GET /nope /dev/null
expect_signed "unknown path, unsigned" 1004 404 ""

# ---- bodies: 1006, 1007, 1001 ----
MIB=$((1024 * 1024))
printf '{"name":"%s"}' "$(rep a $((MIB + 1 - 11)))" > "$IT_DIR/big.json"
gmt_send POST $F/vsms "$IT_DIR/big.json" -H 'Content-Type: application/json'
expect_signed "1 MiB + 1 byte, unsigned" 1006 413 ""
gmt_send POST $F/vsms "$IT_DIR/big.json" -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked'
expect_signed "1 MiB + 1 byte, chunked, unsigned" 1006 413 ""
gmt_request POST $F/vsms "$(cat "$IT_DIR/big.json")"
expect_signed "1 MiB + 1 byte, signed" 1006 413
err "exactly 1 MiB is read (then: no network)" 1002 400 POST $F/vsms "$(printf '{"name":"%s"}' "$(rep a $((MIB - 11)))")"
GMT_CT=text/plain gmt_request POST $F/vsms/v1/start '{}'
expect_signed "Content-Type text/plain" 1007 415
GMT_CT=application/jsonx err "Content-Type application/jsonx" 1007 415 POST $F/vsms/v1/start '{}'
GMT_CT='Application/JSON' err "the media type is case-insensitive" 3001 404 POST $F/vsms/v1/start '{}'
GMT_CT='application/json; charset=utf-8' err "application/json with a charset is JSON" 3001 404 POST $F/vsms/v1/start '{}'
err_table 1001 400 <<EOF
not JSON|POST|$F/vsms|not json
a JSON array|POST|$F/vsms|[]
a JSON string|POST|$F/vsms|"a string"
a truncated object|PUT|$F/chsm/ntp|{"servers":["a"]
an object and garbage|PUT|$F/chsm/ntp|{}x
invalid UTF-8|POST|$F/vsms|$(printf '{"name":"\xff\xfe"}')
EOF
err "nesting deeper than the limit" 1003 400 PUT $F/chsm/ntp '{"servers":[[[[[[[[[["a"]]]]]]]]]]}'
gmt_request POST $F/vsms "{\"vsmId\":\"dup1\",\"vsmId\":\"dup2\",\"name\":\"d\",\"network\":$(vsm_net 127.0.0.1 9)}"
check "duplicate keys: refused as 1001 or 1003 (got ${RESP_CODE:-?}/$RESP_STATUS)" \
  eval '[ "$RESP_CODE/$RESP_STATUS" = 1001/400 ] || [ "$RESP_CODE/$RESP_STATUS" = 1003/400 ]'
expect_signed "duplicate keys: this server answers 1001" 1001 400
for id in dup1 dup2; do
  err "duplicate keys created nothing ($id)" 3001 404 GET $F/vsms/$id
done

# ---- two VSMs: v1 running on P1, v2 stopped on P2 ----
P1=$(free_port)
while P2=$(free_port); [ "$P2" = "$P1" ]; do :; done
while P3=$(free_port); [ "$P3" = "$P1" ] || [ "$P3" = "$P2" ]; do :; done
task_ok "create v1, started" POST $F/vsms "{\"vsmId\":\"v1\",\"name\":\"one\",\"network\":$(vsm_net 127.0.0.1 "$P1"),\"start\":true}"
err "create: the address and port of v1" 3009 409 POST $F/vsms "{\"vsmId\":\"v2\",\"name\":\"two\",\"network\":$(vsm_net 127.0.0.1 "$P1")}"
V2_SECRET=$(secret_b64 32)
task_ok "create v2 with a token" POST $F/vsms \
  "{\"vsmId\":\"v2\",\"name\":\"two\",\"network\":$(vsm_net 127.0.0.1 "$P2"),\"token\":{\"tokenId\":\"t2\",\"secret\":\"$V2_SECRET\"}}"
check "v2's token secret is not in the task" no_secret_in "$RESP_BODY"
check "v1 runs" vsm_state_is v1 running
check "v2 is stopped" vsm_state_is v2 stopped
err "create over capacity (--max-vsms 2)" 3004 409 POST $F/vsms "{\"vsmId\":\"v3\",\"name\":\"three\",\"network\":$(vsm_net 127.0.0.1 "$P3")}"
err "create over capacity, generated id, with a token" 3004 409 POST $F/vsms \
  "{\"name\":\"three\",\"network\":$(vsm_net 127.0.0.1 "$P3"),\"token\":{\"tokenId\":\"t3\",\"secret\":\"$(secret_b64 32)\"}}"
err "create an existing id" 3002 409 POST $F/vsms "{\"vsmId\":\"v1\",\"name\":\"again\",\"network\":$(vsm_net 127.0.0.1 "$P3")}"
err "7.3.3: the address and port of v1" 3009 409 PUT $F/vsms/v2/network "$(vsm_net 127.0.0.1 "$P1")"
gmt_request PUT $F/vsms/v2/network "$(vsm_net 127.0.0.1 "$P2")"
expect_signed "7.3.3: a VSM's own address and port again" 0 200

# ---- 1002 and unknown fields (1003), from a valid body of each interface ----
# METHOD|TARGET|VALID BODY|REQUIRED FIELDS (jq paths): each required field
# left out is 1002, an extra field is 1003.
TOKEN='{"tokenId":"t1","secret":"'$(secret_b64 32)'"}'
NET=$(vsm_net 127.0.0.1 "$P3")
while IFS='|' read -r method target valid required; do
  [ -n "$method" ] || continue
  for p in $required; do
    err "$method $target without ${p#.}" 1002 400 "$method" "$target" "$(jq -c "del($p)" <<<"$valid")"
  done
  err "$method $target with an unknown field" 1003 400 "$method" "$target" "$(jq -c '. + {"bogus":1}' <<<"$valid")"
done <<EOF
PUT|$F/chsm/network|{"hostname":"chsm1","interfaces":[{"name":"eth0","address":"192.0.2.10/24","gateway":"192.0.2.1"}],"dns":["192.0.2.53"]}|.hostname .interfaces .interfaces[0].address
PUT|$F/chsm/ntp|{"servers":["ntp.example.com"],"enabled":true}|.servers
PUT|$F/chsm/image-upload-address|{"url":"https://upload.example/images/"}|.url
PUT|$F/chsm/log-upload-address|{"url":"syslog+udp://127.0.0.1:514","level":"info"}|.url .level
POST|$F/chsm/image/export|{}|
POST|$F/chsm/image/import|$DL|.url .sm3
POST|$F/chsm/upgrade|$DL|.url .sm3
POST|$F/chsm/reboot|{}|
POST|$F/chsm/restore|$DL|.url .sm3
PUT|$F/vsms/v2/network|$NET|.ipAddress .prefixLength .port
PUT|$F/vsms/v2/token|$TOKEN|.tokenId .secret
POST|$F/vsms/v2/image/import|$DL|.url .sm3
POST|$F/vsms/v2/start|{}|
POST|$F/vsms/v2/upgrade|$DL|.url .sm3
DELETE|$F/vsms/v2|{}|
POST|$F/vsms|{"vsmId":"v9","name":"nine","network":$NET,"token":$TOKEN}|.name .network .network.ipAddress .network.port .token.secret
PUT|$F/auth/platform-key|{"publicKey":"-"}|.publicKey
EOF
err "PUT /chsm/network without a body" 1002 400 PUT $F/chsm/network
err "POST /vsms without a body" 1002 400 POST $F/vsms
err_table 1003 400 <<EOF
an unknown field in an interface|PUT|$F/chsm/network|{"hostname":"h","interfaces":[{"name":"eth0","address":"192.0.2.10/24","mtu":1500}]}
an unknown field in the network|POST|$F/vsms|{"name":"n","network":{"ipAddress":"127.0.0.1","prefixLength":8,"port":$P3,"vlan":1}}
an unknown field in the token|POST|$F/vsms|{"name":"n","network":$NET,"token":{"tokenId":"t","secret":"$(secret_b64 32)","pin":"1"}}
an unknown field in the resources|POST|$F/vsms|{"name":"n","network":$NET,"resources":{"cpus":1}}
EOF

# ---- 1003: wrong types ----
IF0='[{"name":"eth0","address":"192.0.2.10/24"}]'
err_table 1003 400 <<EOF
hostname a number|PUT|$F/chsm/network|{"hostname":5,"interfaces":$IF0}
interfaces an object|PUT|$F/chsm/network|{"hostname":"h","interfaces":{}}
servers a string|PUT|$F/chsm/ntp|{"servers":"ntp.example.com"}
headers an array|PUT|$F/chsm/image-upload-address|{"url":"https://u.example/","headers":[]}
sm3 a number|POST|$F/chsm/image/import|{"url":"https://i.example/i","sm3":5}
callbackUrl a number (7.3.7)|POST|$F/vsms/v2/start|{"callbackUrl":5}
prefixLength a string|PUT|$F/vsms/v2/network|{"ipAddress":"127.0.0.1","prefixLength":"8","port":$P2}
port a fraction|PUT|$F/vsms/v2/network|{"ipAddress":"127.0.0.1","prefixLength":8,"port":80.5}
tokenId a number|PUT|$F/vsms/v2/token|{"tokenId":1,"secret":"$(secret_b64 32)"}
network an array|POST|$F/vsms|{"name":"n","network":[]}
resources.maxKeys a string|POST|$F/vsms|{"name":"n","network":$NET,"resources":{"maxKeys":"1"}}
publicKey a number|PUT|$F/auth/platform-key|{"publicKey":1}
EOF

# ---- 1003: values ----
net_body() { printf '{"hostname":"%s","interfaces":[{"name":"%s","address":"%s"%s}]%s}' "$@"; }
DNS9=$(jq -nc '[range(9) | "192.0.2.\(.+1)"]')
NTP9=$(jq -nc '[range(9) | "ntp\(.).example.com"]')
HDR17=$(jq -nc '[range(17) | {key: "X-H\(.)", value: "v"}] | from_entries')
tok() { printf '{"tokenId":"%s","secret":"%s"}' "$1" "$2"; }
vnet() { printf '{"ipAddress":"%s","prefixLength":%s%s,"port":%s}' "$@"; }
err_table 1003 400 <<EOF
vsmId starting with '-' (path)|GET|$F/vsms/-bad|
vsmId of 65 characters (path)|GET|$F/vsms/$(rep a 65)|
vsmId a%2Fb (path)|GET|$F/vsms/a%2Fb|
vsmId .. (path)|GET|$F/vsms/..|
vsmId invalid on 7.3.7|POST|$F/vsms/-bad/start|{}
vsmId starting with '-' (body)|POST|$F/vsms|{"vsmId":"-bad","name":"n","network":$NET}
vsmId of 65 characters (body)|POST|$F/vsms|{"vsmId":"$(rep b 65)","name":"n","network":$NET}
taskId with a bad character|GET|$F/tasks/task_1|
hostname starting with '-'|PUT|$F/chsm/network|$(net_body -bad eth0 192.0.2.10/24)
hostname with a label of 64|PUT|$F/chsm/network|$(net_body "$(rep h 64).example" eth0 192.0.2.10/24)
no interfaces|PUT|$F/chsm/network|{"hostname":"h","interfaces":[]}
two interfaces of one name|PUT|$F/chsm/network|{"hostname":"h","interfaces":[{"name":"eth0","address":"192.0.2.10/24"},{"name":"eth0","address":"192.0.2.11/24"}]}
CIDR without a prefix|PUT|$F/chsm/network|$(net_body h eth0 192.0.2.10)
CIDR /33|PUT|$F/chsm/network|$(net_body h eth0 192.0.2.10/33)
gateway IPv6 on an IPv4 interface|PUT|$F/chsm/network|$(net_body h eth0 192.0.2.10/24 ',"gateway":"2001:db8::1"')
gateway IPv4 on an IPv6 interface|PUT|$F/chsm/network|$(net_body h eth0 2001:db8::10/64 ',"gateway":"192.0.2.1"')
dns not an address|PUT|$F/chsm/network|$(net_body h eth0 192.0.2.10/24 '' ',"dns":["dns.example"]')
9 dns servers|PUT|$F/chsm/network|$(net_body h eth0 192.0.2.10/24 '' ",\"dns\":$DNS9")
ntp: 0 servers|PUT|$F/chsm/ntp|{"servers":[]}
ntp: 9 servers|PUT|$F/chsm/ntp|{"servers":$NTP9}
ntp: a server with '!'|PUT|$F/chsm/ntp|{"servers":["bad!host"]}
image upload: ftp://|PUT|$F/chsm/image-upload-address|{"url":"ftp://upload.example/"}
image upload: javascript:|PUT|$F/chsm/image-upload-address|{"url":"javascript:alert(1)"}
image upload: https:// without a host|PUT|$F/chsm/image-upload-address|{"url":"https://"}
image upload: a header name with a space|PUT|$F/chsm/image-upload-address|{"url":"https://u.example/","headers":{"Bad Header":"x"}}
image upload: a header value with LF|PUT|$F/chsm/image-upload-address|{"url":"https://u.example/","headers":{"Authorization":"Bearer $(secret_b64 24)\nX-Evil: 1"}}
image upload: 17 headers|PUT|$F/chsm/image-upload-address|{"url":"https://u.example/","headers":$HDR17}
image upload: bad url, credentials in a header|PUT|$F/chsm/image-upload-address|{"url":"ftp://u.example/","headers":{"Authorization":"Bearer $(secret_b64 24)"}}
log upload: file://|PUT|$F/chsm/log-upload-address|{"url":"file:///var/log/chsm","level":"info"}
log upload: level debug|PUT|$F/chsm/log-upload-address|{"url":"syslog+udp://127.0.0.1:514","level":"debug"}
7.2.9: sm3 of 63 hex|POST|$F/chsm/image/import|{"url":"https://i.example/i","sm3":"${HEX64:1}"}
7.2.10: url javascript:|POST|$F/chsm/upgrade|{"url":"javascript:alert(1)","sm3":"$HEX64"}
7.3.11: sm3 not hex|POST|$F/vsms/v2/upgrade|{"url":"https://i.example/p","sm3":"$(rep x 64)"}
callbackUrl ftp:// (7.2.8)|POST|$F/chsm/image/export|{"callbackUrl":"ftp://cb.example/"}
callbackUrl javascript: (7.3.7)|POST|$F/vsms/v2/start|{"callbackUrl":"javascript:alert(1)"}
callbackUrl ftp:// (7.3.12)|POST|$F/vsms|{"name":"n","network":$NET,"callbackUrl":"ftp://cb.example/"}
token: secret not base64|PUT|$F/vsms/v2/token|$(tok t "***$(secret_b64 30)***")
token: secret of 15 bytes|PUT|$F/vsms/v2/token|$(tok t "$(secret_b64 15)")
token: secret of 65 bytes|PUT|$F/vsms/v2/token|$(tok t "$(secret_b64 65)")
token: tokenId with a space|PUT|$F/vsms/v2/token|$(tok 'bad id' "$(secret_b64 32)")
port 0|PUT|$F/vsms/v2/network|$(vnet 127.0.0.1 8 '' 0)
port 65536|PUT|$F/vsms/v2/network|$(vnet 127.0.0.1 8 '' 65536)
prefixLength 33 for IPv4|PUT|$F/vsms/v2/network|$(vnet 127.0.0.1 33 '' "$P2")
an IPv6 gateway for IPv4|PUT|$F/vsms/v2/network|$(vnet 127.0.0.1 8 ',"gateway":"::1"' "$P2")
an IPv4 gateway for IPv6|PUT|$F/vsms/v2/network|$(vnet ::1 64 ',"gateway":"127.0.0.1"' "$P2")
ipAddress 256.0.0.1|PUT|$F/vsms/v2/network|$(vnet 256.0.0.1 8 '' "$P2")
resources.maxKeys 0|POST|$F/vsms|{"name":"n","network":$NET,"resources":{"maxKeys":0}}
resources.maxSessions 4097|POST|$F/vsms|{"name":"n","network":$NET,"resources":{"maxSessions":4097}}
resources.memoryMiB 3|POST|$F/vsms|{"name":"n","network":$NET,"resources":{"memoryMiB":3}}
name empty|POST|$F/vsms|{"name":"","network":$NET}
name of 129|POST|$F/vsms|{"name":"$(rep n 129)","network":$NET}
name with a control character|POST|$F/vsms|{"name":"a\u0001b","network":$NET}
EOF

# ---- 3001, 3006: what does not exist ----
err_table 3001 404 <<EOF
7.3.1 of an unknown VSM|GET|$F/vsms/nope|
7.3.2 of an unknown VSM|GET|$F/vsms/nope/status|
7.3.3 of an unknown VSM|PUT|$F/vsms/nope/network|$NET
7.3.4 of an unknown VSM|PUT|$F/vsms/nope/token|$(tok t "$(secret_b64 32)")
7.3.5 of an unknown VSM|POST|$F/vsms/nope/image/export|{}
7.3.6 of an unknown VSM|POST|$F/vsms/nope/image/import|$DL
7.3.7 of an unknown VSM|POST|$F/vsms/nope/start|
7.3.8 of an unknown VSM|POST|$F/vsms/nope/stop|{}
7.3.9 of an unknown VSM|POST|$F/vsms/nope/restart|
7.3.10 of an unknown VSM|POST|$F/vsms/nope/reset|
7.3.11 of an unknown VSM|POST|$F/vsms/nope/upgrade|$DL
7.3.13 of an unknown VSM|DELETE|$F/vsms/nope|
EOF
err "an unknown task" 3006 404 GET $F/tasks/task-0123456789abcdef01234567

# ---- 3007: exports and backups need the image upload address ----
err "7.2.8 before an upload address" 3007 409 POST $F/chsm/image/export '{}'
err "7.2.12 before an upload address" 3007 409 POST $F/chsm/backup
err "7.3.5 (stopped VSM) before an upload address" 3007 409 POST $F/vsms/v2/image/export '{}'
err "7.3.5 (running VSM) before an upload address" 3007 409 POST $F/vsms/v1/image/export
UP_PW=$(secret_b64 12) UP_QS=$(secret_b64 18) UP_TOKEN=$(secret_b64 24)
gmt_request PUT $F/chsm/image-upload-address \
  "{\"url\":\"https://uploader:$UP_PW@upload.example/images/?sig=$UP_QS\",\"headers\":{\"Authorization\":\"Bearer $UP_TOKEN\"}}"
expect_signed "7.2.6 with credentials in the url and a header" 0 200
check "7.2.6 answers without the credentials" no_secret_in "$RESP_BODY" "$RESP_HEADERS"
check "7.2.6 answers the header names" jqt "$RESP_BODY" '.data.headerNames == ["Authorization"]'
gmt_request GET $F/chsm/status/all
check "7.2.3 shows the upload address without credentials" no_secret_in "$RESP_BODY"

# The image interfaces run: their tasks fail here, where nothing answers
# (upload.example, images.example), with 4004/4005, and no credential of
# the upload address shows in the task.
task_fails() {
  gmt_request "${@:3}"
  expect "$1: accepted" 0 202
  wait_task "$(resp_data .taskId)"
  check "$1: task fails with $2 (got ${TASK_STATE:-?}/${TASK_CODE:-?})" [ "${TASK_STATE:-}/${TASK_CODE:-}" = "failed/$2" ]
  check "$1: no credential in the task" no_secret_in "$RESP_BODY"
}
task_fails "7.2.8 export CHSM image" 4004 POST $F/chsm/image/export '{"callbackUrl":"https://cb.example/t"}'
task_fails "7.2.9 import CHSM image" 4005 POST $F/chsm/image/import "$DL"
task_fails "7.2.12 back up CHSM" 4004 POST $F/chsm/backup
task_fails "7.2.13 restore CHSM" 4005 POST $F/chsm/restore "$(jq -c '.allowOtherDevice = false' <<<"$DL")"
# No vendor key was given at init: no package can be verified (test_upgrade
# has the rest of 7.2.10; test_reboot 7.2.11).
task_fails "7.2.10 upgrade CHSM without a vendor key" 4001 POST $F/chsm/upgrade "$DL"
check "7.2.10: ... saying so" jqt "$RESP_BODY" '.data.message | test("no vendor key")'
task_fails "7.3.5 export VSM image" 4004 POST $F/vsms/v2/image/export '{}'
task_fails "7.3.6 import VSM image" 4005 POST $F/vsms/v2/image/import "$DL"
check "v2 is stopped again after the failed import" vsm_state_is v2 stopped
task_fails "7.3.11 upgrade VSM" 4005 POST $F/vsms/v2/upgrade "$DL"
check "v2 is stopped again after the failed upgrade" vsm_state_is v2 stopped

# ---- 3003: the state table of §8 (v1 running, v2 stopped) ----
err "start a running VSM" 3003 409 POST $F/vsms/v1/start
err "stop a stopped VSM" 3003 409 POST $F/vsms/v2/stop
err "restart a stopped VSM" 3003 409 POST $F/vsms/v2/restart
err "import into a running VSM" 3003 409 POST $F/vsms/v1/image/import "$DL"
# v1 into fault, its process killed (test_lifecycle checks fault itself).
V1_PID=$(vsm_pid v1)
[ -n "$V1_PID" ] && kill -KILL "$V1_PID" && eventually 15 vsm_state_is v1 fault ||
  fail_now "v1 did not go to fault when its process was killed"
err "configure network in fault" 3003 409 PUT $F/vsms/v1/network "$(vsm_net 127.0.0.1 "$P1")"
err "configure token in fault" 3003 409 PUT $F/vsms/v1/token "$(tok t1 "$(secret_b64 32)")"
err "import into a VSM in fault" 3003 409 POST $F/vsms/v1/image/import "$DL"
task_fails "export a VSM in fault (allowed: a drift exports a failed VSM)" 4004 POST $F/vsms/v1/image/export
check "v1 stays in fault after its export" vsm_state_is v1 fault
err "upgrade a VSM in fault" 3003 409 POST $F/vsms/v1/upgrade "$DL"
task_ok "start from fault" POST $F/vsms/v1/start
check "v1 runs again" vsm_state_is v1 running

# ---- 3005: one task per target. A stopped (SIGSTOP) process cannot act on
# SIGTERM, so the stop task waits out its grace period (5 s) unless the
# process is continued: the requests below find the task active. A request
# answered only after the task ended (a very slow machine) proves nothing
# and is skipped, judged by the task's finishedAt. ----
now_ms() { echo $(($(date +%s%N) / 1000000)); }
V1_PID=$(vsm_pid v1)
kill -STOP "$V1_PID"
gmt_request POST $F/vsms/v1/stop
expect_signed "stop v1 (its process is frozen)" 0 202
STOP_TASK=$(resp_data .taskId)
PROBES=()
probe() { gmt_request "${@:2}" </dev/null; PROBES+=("$(now_ms)|$RESP_CODE/$RESP_STATUS|$1"); }
probe "stop again while the first stop runs" POST $F/vsms/v1/stop
probe "start while the stop runs" POST $F/vsms/v1/start
probe "configure network while the stop runs" PUT $F/vsms/v1/network "$(vsm_net 127.0.0.1 "$P1")"
probe "delete while the stop runs" DELETE $F/vsms/v1
kill -CONT "$V1_PID"
wait_task "$STOP_TASK"
check "the stop task then succeeds" [ "$TASK_STATE" = succeeded ]
FINISHED=$(resp_data .finishedAt)
LATE=0
for p in "${PROBES[@]}"; do
  IFS='|' read -r t got desc <<<"$p"
  if [ "$t" -lt "$FINISHED" ]; then check "$desc (want 3005/409, got $got)" [ "$got" = 3005/409 ]
  else echo "ok - # SKIP $desc: answered after the stop ended"; LATE=1; fi
done
# A probe answered late may have started or deleted v1 by right.
if [ "$LATE" = 0 ]; then check "v1 is stopped" vsm_state_is v1 stopped
else echo "ok - # SKIP v1 is stopped: a probe was answered after the stop ended"; fi

# ---- 3003: an import never overwrites a VSM that holds keys ----
printf '%s\n' "$V2_SECRET" > "$IT_DIR/v2.token"
task_ok "start v2" POST $F/vsms/v2/start
check "a key made in v2 through the VSM service (vsmtool)" vsm_tool "$P2" t2 "$IT_DIR/v2.token" keygen --index 1
task_ok "stop v2" POST $F/vsms/v2/stop
err "import into a stopped VSM that holds keys" 3003 409 POST $F/vsms/v2/image/import "$DL"

# ---- no secret in the log ----
check "chsmd stops cleanly" chsm_stop
check "the log has request lines" grep -q 'event=request' "$CHSMD_LOG"
check "no request secret in the chsmd log ($(wc -l < "$SECRETS") secrets)" no_secret_in "$CHSMD_LOG"
check "enrollment code not in the chsmd log" eval '! grep -qF "$ENROLL_CODE" "$CHSMD_LOG"'
it_end
