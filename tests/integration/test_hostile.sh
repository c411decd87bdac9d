#!/usr/bin/env bash
# Hostile clients (issue #7): slow-loris and silent connections, oversized
# heads and bodies, thousands of connections, valid signatures replayed or
# out of the window, a flood of enrollment attempts, path tricks in vsmId
# and URLs, and a VSM tenant reaching for another VSM's keys. Each is
# refused the way docs/http.md, docs/api.md and docs/vsm-protocol.md say,
# and after each one another client's signed request still succeeds.
# hostile.py holds the raw clients.
. "$(dirname "$0")/lib.sh"
it_begin hostile
API=/gmt0088/v1
H="$(cd "$(dirname "$0")" && pwd)/hostile.py"
# Room for the thousands of connections below, in chsmd and in the client.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
chsm_init --max-vsms 8
chsm_start
device_pub_pem
enroll_platform

# still_serves WHAT: another client's signed request succeeds.
still_serves() {
  gmt_request GET $API/chsm/status
  check "after $1: a signed request from another client succeeds (${RESP_CODE:-?}/$RESP_STATUS)" \
    [ "$RESP_CODE/$RESP_STATUS" = 0/200 ]
}
hex() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
raw() {  # METHOD TARGET-HEX: a request signed over exactly those bytes
  python3 "$H" raw 127.0.0.1 "$PORT" "$CACERT" --method "$1" --target-hex "$2" \
    --key "$SIGN_KEY" --key-id "$SIGN_KEY_ID"
}
curl_status() { curl -sS --cacert "$CACERT" -o "$IT_DIR/c.body" -w '%{http_code}' "$@"; }

# ---- slow and silent connections ----
# docs/http.md: a request must be complete within CHSM_CONN_TIMEOUT_SECONDS
# (30 s) of its first byte, and the first request within 30 s of the
# accept (TLS handshake included); evhttp's own timeout restarts on every
# byte, the server's request timer does not. 20 connections of each kind
# are opened at once; meanwhile other clients are served; the server must
# close every one of them (the clients give up after 120 s).
for m in trickle idle-tcp idle-tls; do
  python3 "$H" slow 127.0.0.1 "$PORT" "$CACERT" --mode $m --n 20 --max-secs 120 > "$IT_DIR/slow.$m" 2>&1 &
  eval "SLOW_$(tr - _ <<<"$m")=\$!"
done
sleep 2
for i in 1 2 3; do
  gmt_request GET $API/chsm
  check "while 60 slow and silent connections are open: a signed request succeeds ($i)" [ "$RESP_CODE" = 0 ]
  sleep 1
done
for m in trickle idle-tcp idle-tls; do
  eval "wait \$SLOW_$(tr - _ <<<"$m")"
  check "slow client ($m): the server closed all 20 connections ($(tail -n 1 "$IT_DIR/slow.$m"))" \
    grep -qx 'closed=20 of 20' "$IT_DIR/slow.$m"
done
still_serves "slow-loris"

# ---- oversized heads and bodies ----
# The head limit is 16 KiB (CHSM_MAX_HEADER_BYTES); evhttp refuses a
# larger head itself: HTTP 400, no envelope (the profile has no code for
# it; docs/http.md), and closes the connection.
BIG=$(head -c 20000 /dev/zero | tr '\0' a)
check "a 20 KB header: 400 from the HTTP layer" [ "$(curl_status -H "X-Big: $BIG" "$BASE$API/chsm")" = 400 ]
MANY=()
V40=$(head -c 40 /dev/zero | tr '\0' b)
for i in $(seq 1 400); do MANY+=(-H "X-Many-$i: $V40"); done
check "400 headers of 50 bytes (20 KB): 400 from the HTTP layer" [ "$(curl_status "${MANY[@]}" "$BASE$API/chsm")" = 400 ]
LONG=$(head -c 20000 /dev/zero | tr '\0' a)
check "a 20 KB request target: 400 from the HTTP layer" [ "$(curl_status --path-as-is "$BASE$API/vsms/$LONG")" = 400 ]
still_serves "oversized heads"
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' > "$IT_DIR/big.json"
gmt_send POST $API/vsms "$IT_DIR/big.json" -H 'Content-Type: application/json'
expect "a body of 1 MiB + 1 byte: 1006" 1006 413
check "... with the device signature" device_signed ""
RESP_STATUS=$(curl -sS --cacert "$CACERT" -X POST -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' \
  --data-binary "@$IT_DIR/big.json" -o "$RESP_BODY" -w '%{http_code}' "$BASE$API/vsms")
RESP_CODE=$(jq -r .code "$RESP_BODY" 2>/dev/null)
expect "a chunked body over 1 MiB: 1006" 1006 413
python3 - "$PORT" "$CACERT" > "$IT_DIR/huge-cl" <<'EOF'
import socket, ssl, sys
s = ssl.create_default_context(cafile=sys.argv[2]).wrap_socket(
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30), server_hostname="127.0.0.1")
s.sendall(b"POST /gmt0088/v1/vsms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Content-Length: 10000000000\r\n\r\n{")
data = b""
while True:
    c = s.recv(65536)
    if not c:
        break
    data += c
print(data.split(b"\r\n")[0].decode(), data.rsplit(b"\r\n\r\n", 1)[-1][:40].decode())
EOF
check "Content-Length of 10 GB, body never sent: 413 and 1006 at once ($(cat "$IT_DIR/huge-cl"))" \
  grep -q '^HTTP/1.1 413 .*{"code":1006' "$IT_DIR/huge-cl"
still_serves "oversized bodies"

# ---- thousands of connections ----
# docs/http.md: CHSM_MAX_CONNECTIONS (1024) connections are served at
# once, at most CHSM_MAX_CONNECTIONS_PER_PEER (256) of them from one client
# address; beyond either a new connection is closed at once.
# flood SRC... : 2,000 TCP connections in all, spread over the source
# addresses; sets HELD (connections the server kept) and CLOSED (closed at
# once), and leaves the connections open until release.
flood() {
  local n=$((2000 / $#)) src i=0
  rm -f "$IT_DIR/release" "$IT_DIR"/flood.*
  FLOODS=""
  for src in "$@"; do
    i=$((i + 1))
    python3 "$H" flood 127.0.0.1 "$PORT" --n "$n" --src "$src" --release "$IT_DIR/release" > "$IT_DIR/flood.$i" 2>&1 &
    FLOODS="$FLOODS $!"
  done
  HELD=0 CLOSED=0 OPENED=0
  for i in $(seq 1 $#); do
    eventually 120 grep -q '^opened=' "$IT_DIR/flood.$i"
    read -r o c h _ < <(sed -n 's/^opened=\([0-9]*\) closed_at_once=\([0-9]*\) held=\([0-9]*\) failed=\([0-9]*\)$/\1 \2 \3 \4/p' "$IT_DIR/flood.$i")
    OPENED=$((OPENED + ${o:-0})) CLOSED=$((CLOSED + ${c:-0})) HELD=$((HELD + ${h:-0}))
  done
  echo "# flood from $*: $OPENED connected, $HELD held, $CLOSED closed at once"
}
release() { touch "$IT_DIR/release"; wait $FLOODS; }
flood 127.0.0.2
check "2,000 connections from one address: every one connected ($OPENED)" [ "$OPENED" = 2000 ]
check "... at most 256 of them held ($HELD)" [ "$HELD" -le 256 ]
check "... the rest closed at once ($CLOSED)" [ "$((OPENED - HELD))" = "$CLOSED" ]
check "chsmd is alive" kill -0 "$CHSMD_PID"
gmt_request GET $API/chsm
expect "while one address holds its 256: another client's signed request succeeds" 0 200
release
flood 127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5 127.0.0.6 127.0.0.7 127.0.0.8 127.0.0.9
check "2,000 connections from 8 addresses: every one connected ($OPENED)" [ "$OPENED" = 2000 ]
check "... at most 1024 of them held ($HELD)" [ "$HELD" -le 1024 ]
check "... the rest closed at once ($CLOSED)" [ "$((OPENED - HELD))" = "$CLOSED" ]
check "chsmd is alive with every slot taken" kill -0 "$CHSMD_PID"
release
still_serves "2,000 connections"

# ---- valid signatures, replayed or out of the window ----
TS=$(($(date +%s%N) / 1000000)); NONCE=$(openssl rand -hex 16)
GMT_TS=$TS GMT_NONCE=$NONCE gmt_request GET $API/chsm
expect_signed "a signed request" 0 200
GMT_TS=$TS GMT_NONCE=$NONCE gmt_request GET $API/chsm
expect_signed "the same request again (replay): 2004" 2004 401
PORT_X=$(free_port)
GMT_TS=$TS GMT_NONCE=$(openssl rand -hex 16) GMT_IDEM=hostile-1 gmt_request POST $API/vsms \
  "{\"vsmId\":\"x1\",\"name\":\"X\",\"network\":$(vsm_net 127.0.0.1 "$PORT_X")}"
expect "create x1" 0 202
wait_task "$(resp_data .taskId)"
GMT_TS=$TS GMT_NONCE=$LAST_NONCE gmt_request POST $API/vsms \
  "{\"vsmId\":\"x2\",\"name\":\"X\",\"network\":$(vsm_net 127.0.0.1 "$PORT_X")}"
expect "a replayed nonce with another body (signed anew): 2004" 2004 401
# The window is ±300 s; 10 s of margin either way for a slow machine.
now_ms() { echo $(($(date +%s%N) / 1000000)); }
GMT_TS=$(($(now_ms) - 310000)) gmt_request GET $API/chsm
expect_signed "a timestamp 310 s old: 2003" 2003 401
GMT_TS=$(($(now_ms) + 310000)) gmt_request GET $API/chsm
expect_signed "a timestamp 310 s ahead: 2003" 2003 401
GMT_TS=$(($(now_ms) - 290000)) gmt_request GET $API/chsm
expect "a timestamp 290 s old (inside the window): 0" 0 200
GMT_TS=$(($(now_ms) + 290000)) gmt_request GET $API/chsm
expect "a timestamp 290 s ahead (inside the window): 0" 0 200
gmt_request GET $API/vsms
check "nothing was created by the replays: one VSM" [ "$(jq '.data.vsms | length' "$RESP_BODY")" = 1 ]
still_serves "replays"

# ---- a flood of enrollment attempts ----
# With a platform key set, enrollment is closed: every HMAC-SM3 request is
# 2007 and the platform key stays. 40 attempts, 8 at a time.
FP_BEFORE=$(curl -sS --cacert "$CACERT" "$BASE$API/auth/platform-key/fingerprint" | jq -r .data.fingerprint)
enroll_try() {
  local d=$IT_DIR/enr.$1; mkdir -p "$d"
  ( IT_DIR=$d; GMT_HMAC_CODE=$(openssl rand -hex 13) gmt_request PUT $API/auth/platform-key \
      "{\"publicKey\":$(jq -Rs . < "$2")}"; echo "$RESP_CODE/$RESP_STATUS" > "$d/code" )
}
openssl genpkey -algorithm SM2 -out "$IT_DIR/evil.pem" 2>/dev/null
openssl pkey -in "$IT_DIR/evil.pem" -pubout -out "$IT_DIR/evil.pub.pem"
PIDS=""
for i in $(seq 1 40); do
  enroll_try "$i" "$IT_DIR/evil.pub.pem" &
  PIDS="$PIDS $!"
  if [ $((i % 8)) -eq 0 ]; then wait $PIDS; PIDS=""; fi
done
check "40 enrollment attempts on an enrolled CHSM: every one 2007/401" \
  [ "$(cat "$IT_DIR"/enr.*/code | sort -u)" = 2007/401 ]
check "the platform key is unchanged" \
  [ "$(curl -sS --cacert "$CACERT" "$BASE$API/auth/platform-key/fingerprint" | jq -r .data.fingerprint)" = "$FP_BEFORE" ]
still_serves "an enrollment flood"
# A CHSM waiting for enrollment: five wrong codes lock enrollment, and the
# right code is then refused too, until the administrator issues a new
# code (operations.md §10); the first CHSM serves throughout.
chsm_save main
STATE=$IT_DIR/fresh CHSMD_LOG=$IT_DIR/fresh.log
chsm_init
chsm_start
for i in 1 2 3 4 5; do
  GMT_HMAC_CODE=WRONGWRONGWRONGWRONGWRON$i gmt_request PUT $API/auth/platform-key "{\"publicKey\":$(jq -Rs . < "$IT_DIR/evil.pub.pem")}"
  expect "fresh CHSM: wrong enrollment code $i: 2007" 2007 401
done
GMT_HMAC_CODE=$ENROLL_CODE gmt_request PUT $API/auth/platform-key "{\"publicKey\":$(jq -Rs . < "$IT_DIR/platform.pub.pem")}"
expect "fresh CHSM: the right code after five wrong ones: 2007 (locked)" 2007 401
check "fresh CHSM: the lock is logged" grep -q 'event=enrollment.locked failures=5' "$CHSMD_LOG"
check "fresh CHSM: still not enrolled" \
  [ "$(curl -sS --cacert "$CACERT" "$BASE$API/auth/platform-key/fingerprint" | jq -r .data.configured)" = false ]
chsm_save fresh
chsm_on main still_serves "an enrollment lock-out on another CHSM"
chsm_use fresh
chsm_stop
NEW_CODE=$("$CHSM_BIN/chsmd" admin reset-platform-key --state-dir "$STATE" | sed -n 's/^enrollment-code: //p')
check "fresh CHSM: the administrator issues a new code" [ -n "$NEW_CODE" ]
chsm_start
GMT_HMAC_CODE=$NEW_CODE gmt_request PUT $API/auth/platform-key "{\"publicKey\":$(jq -Rs . < "$IT_DIR/platform.pub.pem")}"
expect "fresh CHSM: enrollment with the new code" 0 200
gmt_request GET $API/chsm
expect "fresh CHSM: the platform key works" 0 200
chsm_stop
chsm_use main

# ---- path tricks ----
# The router matches the request-target as sent, undecoded (docs/api.md
# §1.4): an unknown path is 1004, a {vsmId} or {taskId} that is not
# ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ (resp. ^[A-Za-z0-9-]{1,64}$) is 1003.
# Every request is correctly signed over its target.
ID64=$(head -c 64 /dev/zero | tr '\0' a)
while IFS='|' read -r code status target; do
  [ -n "$code" ] || continue
  gmt_request GET "$target"
  expect "GET $target" "$code" "$status"
done <<EOF
1004|404|$API/vsms/../chsm
1004|404|$API/vsms/x1/../../chsm
1004|404|$API/../../etc/passwd
1004|404|/gmt0088/v1/../v1/chsm
1004|404|//gmt0088/v1/chsm
1004|404|$API/chsm/
1004|404|$API//chsm
1004|404|/GMT0088/v1/chsm
1004|404|/etc/passwd
1004|404|/
1004|404|$API/vsms/x1/status/../../x1
1004|404|$API/vsms/%2e%2e/chsm
1003|400|$API/vsms/%2e%2e
1003|400|$API/vsms/..
1003|400|$API/vsms/.
1003|400|$API/vsms/x1%2fstatus
1003|400|$API/vsms/x1%2Fstatus
1003|400|$API/vsms/%2fetc%2fpasswd
1003|400|$API/vsms/%00
1003|400|$API/vsms/x1%00
1003|400|$API/vsms/%C3%A9
1003|400|$API/vsms/%E2%80%AEx1
1003|400|$API/vsms/x1%20
1003|400|$API/vsms/-x1
1003|400|$API/vsms/${ID64}a
3001|404|$API/vsms/$ID64
1003|400|$API/tasks/..%2f..%2fchsm
1003|400|$API/tasks/task.x
0|200|$API/vsms/x1
0|200|$API/chsm?../../etc/passwd
EOF
# Bytes curl would not send as they are: raw UTF-8, a NUL, the absolute
# form, a target without a leading slash.
check "raw UTF-8 in the vsmId: 1003 ($(raw GET "$(hex "$API/vsms/")c3a9"))" \
  eval '[ "$(raw GET "$(hex "$API/vsms/")c3a9")" = "status=400 code=1003" ]'
check "raw right-to-left override in the vsmId: 1003" \
  eval '[ "$(raw GET "$(hex "$API/vsms/")e280ae$(hex x1)")" = "status=400 code=1003" ]'
R=$(raw GET "$(hex "$API/vsms/x1")00$(hex /status)")
check "a NUL byte in the target: refused by the HTTP layer ($R)" eval '[ "$R" = "status=400 code=-" ] || [ "$R" = closed ]'
check "the absolute form: 1004" eval '[ "$(raw GET "$(hex "https://127.0.0.1:$PORT$API/chsm")")" = "status=404 code=1004" ]'
check "a target without its leading slash: 1004" eval '[ "$(raw GET "$(hex "gmt0088/v1/chsm")")" = "status=404 code=1004" ]'
gmt_request DELETE "$API/vsms/%78%31"
expect "DELETE of x1 spelt with percent escapes: 1003, x1 untouched" 1003 400
check "x1 is still there" vsm_state_is x1 stopped
still_serves "path tricks"

# ---- a VSM tenant reaching for another VSM's keys ----
# VSM A's tenant knows A's token, and B's endpoint, token id and key
# indexes, not B's secret. It attacks from 127.0.0.2, so that the delay
# the VSMs put on failed AUTHs from that address does not slow the
# legitimate tenants on 127.0.0.1.
openssl rand -base64 32 | tr -d '\n' > "$IT_DIR/a.b64"
openssl rand -base64 32 | tr -d '\n' > "$IT_DIR/b.b64"
PA=$(free_port); PB=$(free_port)
for v in a b; do
  eval "p=\$P${v^^}"
  task_ok "create VSM $v (started)" POST $API/vsms "{\"vsmId\":\"$v\",\"name\":\"$v\",\"network\":$(vsm_net 127.0.0.1 "$p"),
    \"token\":{\"tokenId\":\"$v-app\",\"secret\":\"$(cat "$IT_DIR/$v.b64")\"},\"start\":true}"
done
TA() { vsm_tool "$PA" a-app "$IT_DIR/a.b64" "$@"; }
TB() { vsm_tool "$PB" b-app "$IT_DIR/b.b64" "$@"; }
check "A: a key at 1" TA keygen --index 1
check "B: keys at 1 and 2" eval 'TB keygen --index 1 && TB keygen --index 2'
b_state() {
  { TB list | sed 's/ created=.*//'; TB pubkey --index 1; TB pubkey --index 2
    gmt_request GET $API/vsms/b/status; resp_data .stateDigest; } 2>&1
}
b_state > "$IT_DIR/b.before"
TB pubkey --index 2 | openssl pkey -pubin -outform DER | tail -c 65 | od -An -tx1 | tr -d ' \n' > "$IT_DIR/b2.point"
TB pubkey --index 1 | openssl pkey -pubin -outform DER | tail -c 65 | od -An -tx1 | tr -d ' \n' > "$IT_DIR/b1.point"
OUT=$(python3 "$H" tenant 127.0.0.1 0 --src 127.0.0.2 --a-port "$PA" --a-token-id a-app \
  --a-secret-file "$IT_DIR/a.b64" --a-index 1 --b-port "$PB" --b-token-id b-app --b-index 2 \
  --b-pub-file "$IT_DIR/b1.point" 2>&1)
printf '%s\n' "$OUT"
IT_PASS=$((IT_PASS + $(grep -c '^ok - ' <<<"$OUT"))); IT_FAIL=$((IT_FAIL + $(grep -c '^not ok - ' <<<"$OUT")))
check "the tenant attacks ran to the end" [ "$(grep -c '^ok - \|^not ok - ' <<<"$OUT")" -ge 20 ]
b_state > "$IT_DIR/b.after"
check "B's keys, public keys and stateDigest are untouched" cmp -s "$IT_DIR/b.before" "$IT_DIR/b.after"
head -c 64 /dev/urandom > "$IT_DIR/m"
check "B's tenant still signs with key 2" eval 'TB sign --index 2 --in "$IT_DIR/m" | base64 -d > "$IT_DIR/m.sig" &&
  TB pubkey --index 2 > "$IT_DIR/b2.pem" && openssl dgst -sm3 -verify "$IT_DIR/b2.pem" -sigopt distid:$DISTID -signature "$IT_DIR/m.sig" "$IT_DIR/m" >/dev/null'
check "A's tenant still works" eval 'TA list >/dev/null'
check "both VSMs still run" eval 'vsm_state_is a running && vsm_state_is b running'
still_serves "the tenant attacks"
it_end
