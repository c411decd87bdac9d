#!/usr/bin/env bash
# Network on the sandbox platform (the default): 7.2.4's strict checks,
# each with its exact code and nothing changed; a valid 7.2.4 is stored
# and answered "applied": "stored"; 7.3.3 moves a running VSM's listener
# live from 127.0.0.x:p1 to 127.0.0.y:p2 (old endpoint silent, new one
# serving, an authenticated session opened before the move still served),
# 3009 for an endpoint another VSM or program holds, 1003 for an address
# that is not this host's, a stopped VSM ("now"), and a VSM whose address
# is not local failing its start into fault with a clear lastError.
. "$(dirname "$0")/lib.sh"
it_begin network_sandbox
API=/gmt0088/v1

chsm_init --max-vsms 4
chsm_start
enroll_platform
device_pub_pem

config_network() { gmt_request GET $API/chsm/status/all; jq -cS .data.config.network "$RESP_BODY"; }

# ---- 7.2.4: a valid configuration, stored and reported ----
GOOD='{"hostname":"chsm-a","interfaces":[{"name":"eth0","address":"192.0.2.10/24","gateway":"192.0.2.1"},{"name":"eth1","address":"fd00::2/64","gateway":"fe80::1"}],"dns":["192.0.2.53","127.0.0.53"]}'
gmt_request PUT $API/chsm/network "$GOOD"
expect_signed "7.2.4 valid (an IPv6 link-local gateway, a local resolver)" 0 200
check "7.2.4 answers applied: stored" [ "$(resp_data .applied)" = stored ]
check "7.2.4 echoes the configuration" jqt "$RESP_BODY" '.data.hostname == "chsm-a" and (.data.interfaces | length) == 2'
BEFORE=$(config_network)
check "7.2.3 shows it (without applied)" jqt <(echo "$BEFORE") '.hostname == "chsm-a" and (has("applied") | not)'

# ---- 7.2.4: every refusal is 1003 and changes nothing ----
net() { printf '{"hostname":"%s","interfaces":[%s]%s}' "$1" "$2" "${3:-}"; }
if4() { printf '{"name":"%s","address":"%s"%s}' "$1" "$2" "${3:+,\"gateway\":\"$3\"}"; }
while IFS='|' read -r desc body; do
  [ -n "$desc" ] || continue
  gmt_request PUT $API/chsm/network "$body"
  expect_signed "7.2.4 refuses $desc" 1003 400
  check "7.2.4 $desc: configuration unchanged" [ "$(config_network)" = "$BEFORE" ]
done <<TABLE
a gateway outside the prefix|$(net h "$(if4 eth0 192.0.2.10/24 192.0.3.1)")
a gateway equal to the address|$(net h "$(if4 eth0 192.0.2.10/24 192.0.2.10)")
a gateway on the network address|$(net h "$(if4 eth0 192.0.2.10/24 192.0.2.0)")
a gateway on the broadcast address|$(net h "$(if4 eth0 192.0.2.10/24 192.0.2.255)")
a gateway with a /32|$(net h "$(if4 eth0 192.0.2.10/32 192.0.2.1)")
an IPv6 gateway outside the prefix|$(net h "$(if4 eth0 fd00::2/64 fd01::1)")
an IPv6 multicast gateway|$(net h "$(if4 eth0 fd00::2/64 ff02::2)")
the network address|$(net h "$(if4 eth0 192.0.2.0/24)")
the broadcast address|$(net h "$(if4 eth0 192.0.2.255/24)")
a multicast address|$(net h "$(if4 eth0 224.0.0.5/24)")
a loopback address|$(net h "$(if4 eth0 127.0.0.2/8)")
an IPv4 link-local address|$(net h "$(if4 eth0 169.254.3.4/16)")
the unspecified address|$(net h "$(if4 eth0 0.0.0.0/8)")
the IPv6 loopback|$(net h "$(if4 eth0 ::1/128)")
an IPv6 multicast address|$(net h "$(if4 eth0 ff02::1/64)")
prefix 0|$(net h "$(if4 eth0 10.1.0.1/0)")
a prefix with a leading zero|$(net h "$(if4 eth0 10.1.0.1/08)")
an interface name starting with '-'|$(net h "$(if4 -eth0 192.0.2.10/24)")
an interface name of 16 characters|$(net h "$(if4 abcdefghijklmnop 192.0.2.10/24)")
two IPv4 default gateways|$(net h "$(if4 eth0 192.0.2.10/24 192.0.2.1),$(if4 eth1 198.51.100.10/24 198.51.100.1)")
one address on two interfaces|$(net h "$(if4 eth0 192.0.2.10/24),$(if4 eth1 192.0.2.10/25)")
a multicast DNS server|$(net h "$(if4 eth0 192.0.2.10/24)" ',"dns":["224.0.0.251"]')
the unspecified DNS server|$(net h "$(if4 eth0 192.0.2.10/24)" ',"dns":["::"]')
a DNS server that is a name|$(net h "$(if4 eth0 192.0.2.10/24)" ',"dns":["dns.example"]')
a host name with '_'|$(net bad_host "$(if4 eth0 192.0.2.10/24)")
a host name ending with '-'|$(net host- "$(if4 eth0 192.0.2.10/24)")
TABLE

# ---- VSMs ----
head -c 32 /dev/urandom > "$IT_DIR/tok.raw"
base64 -w0 "$IT_DIR/tok.raw" > "$IT_DIR/tok.b64"
SECRET=$(cat "$IT_DIR/tok.b64")
P1=$(free_port); P2=$(free_port); P3=$(free_port)
task_ok "create v1 on 127.0.0.2:$P1, started" POST $API/vsms \
  "{\"vsmId\":\"v1\",\"name\":\"one\",\"network\":$(vsm_net 127.0.0.2 "$P1"),\"token\":{\"tokenId\":\"app\",\"secret\":\"$SECRET\"},\"start\":true}"
task_ok "create v2 on 127.0.0.1:$P3, started" POST $API/vsms \
  "{\"vsmId\":\"v2\",\"name\":\"two\",\"network\":$(vsm_net 127.0.0.1 "$P3"),\"start\":true}"
tool_at() { "$CHSM_BIN/vsmtool" --endpoint "$1" --token-id app --token-secret-file "$IT_DIR/tok.b64" "${@:2}"; }
check "v1 serves at 127.0.0.2:$P1" eval 'tool_at 127.0.0.2:$P1 random --bytes 8 >/dev/null'
V1_PID=$(vsm_pid v1)

# A session authenticated before the move, held open across it.
mkfifo "$IT_DIR/hold.in"
python3 "$(dirname "$0")/vsmp_raw.py" 127.0.0.2 "$P1" app "$IT_DIR/tok.raw" hold \
  < "$IT_DIR/hold.in" > "$IT_DIR/hold.out" 2>&1 &
HOLD_PID=$!
IT_BG_PIDS="${IT_BG_PIDS:-} $HOLD_PID"
exec 7> "$IT_DIR/hold.in"
check "the held session made its first request" eventually 20 grep -q '^first status=0x00000000' "$IT_DIR/hold.out"

# 3009: v2's endpoint, and a port some other program holds.
gmt_request PUT $API/vsms/v1/network "$(vsm_net 127.0.0.1 "$P3")"
expect_signed "7.3.3 onto v2's endpoint" 3009 409
hold_port 0
gmt_request PUT $API/vsms/v1/network "$(vsm_net 127.0.0.1 "$HELD_PORT")"
expect_signed "7.3.3 onto a port another program holds: 3009" 3009 409
check "the 3009 message names the bind error" grep -q 'Address already in use' "$RESP_BODY"
kill "$HOLDER_PID"
# 1003: an address that is not this host's.
gmt_request PUT $API/vsms/v1/network "$(vsm_net 192.0.2.77 "$P2")"
expect_signed "7.3.3 to an address that is not this host's" 1003 400
check "the 1003 message says why" grep -q 'not an address this CHSM can serve' "$RESP_BODY"
gmt_request GET $API/vsms/v1
check "after the refusals v1's network is unchanged" jqt "$RESP_BODY" \
  ".data.network.ipAddress == \"127.0.0.2\" and .data.network.port == $P1"
check "after the refusals v1 still serves at 127.0.0.2:$P1" listening 127.0.0.2 "$P1"
SV=$(resp_data .stateVersion)

# The live move.
gmt_request PUT $API/vsms/v1/network "{\"ipAddress\":\"127.0.0.3\",\"prefixLength\":8,\"gateway\":\"127.0.0.1\",\"port\":$P2}"
expect_signed "7.3.3 moves running v1 to 127.0.0.3:$P2" 0 200
check "7.3.3 answers applied: live" [ "$(resp_data .applied)" = live ]
check "7.3.3 answer: the new endpoint" [ "$(resp_data .serviceEndpoint)" = "127.0.0.3:$P2" ]
check "7.3.3: stateVersion grew" [ "$(resp_data .stateVersion)" -gt "$SV" ]
check "v1 still running, same process" [ "$(vsm_pid v1)" = "$V1_PID" ]
check "the new endpoint serves (vsmtool)" eval 'tool_at 127.0.0.3:$P2 random --bytes 8 >/dev/null'
check "the old endpoint no longer answers" not_listening 127.0.0.2 "$P1"
echo go >&7
exec 7>&-
wait "$HOLD_PID"
check "the session opened before the move is still served" grep -q '^second status=0x00000000' "$IT_DIR/hold.out"

# Only the port.
gmt_request PUT $API/vsms/v1/network "$(vsm_net 127.0.0.3 "$P1")"
expect_signed "7.3.3 changes only the port" 0 200
check "port move: live" [ "$(resp_data .applied)" = live ]
check "port move: the new port serves" eval 'tool_at 127.0.0.3:$P1 random --bytes 8 >/dev/null'
check "port move: the old port is silent" not_listening 127.0.0.3 "$P2"

# ---- a stopped VSM: stored, applies at its start ----
task_ok "stop v2" POST $API/vsms/v2/stop
gmt_request PUT $API/vsms/v2/network "$(vsm_net 192.0.2.77 "$P3")"
expect_signed "7.3.3 of a stopped VSM to a non-local address is stored" 0 200
check "stopped VSM: applied now" [ "$(resp_data .applied)" = now ]
gmt_request POST $API/vsms/v2/start
expect "start v2 on a non-local address: accepted" 0 202
wait_task "$(resp_data .taskId)"
check "the start fails (task failed 5000)" [ "$TASK_STATE/$TASK_CODE" = failed/5000 ]
gmt_request GET $API/vsms/v2/status
check "v2 is in fault" [ "$(resp_data .state)" = fault ]
check "lastError says the address is not this host's" jqt "$RESP_BODY" \
  '.data.lastError | test("192.0.2.77 is not an address of this host")'
gmt_request PUT $API/vsms/v2/network "$(vsm_net 127.0.0.4 "$P3")"
expect "7.3.3 of a VSM in fault: not allowed" 3003 409
task_ok "reset v2 (fault to stopped)" POST $API/vsms/v2/reset
gmt_request PUT $API/vsms/v2/network "$(vsm_net 127.0.0.4 "$P3")"
expect_signed "7.3.3 of the stopped VSM, local again" 0 200
task_ok "start v2" POST $API/vsms/v2/start
check "v2 serves at 127.0.0.4:$P3" listening 127.0.0.4 "$P3"

check "SIGTERM stops chsmd cleanly" chsm_stop
it_end
