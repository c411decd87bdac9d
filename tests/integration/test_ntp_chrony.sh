#!/usr/bin/env bash
# NTP (PROFILE.md 7.2.5, 7.2.2): chsmd measures its clock against a real
# chrony serving on loopback (its own clock, `local stratum 8`, never
# touching the system clock) and reports ntp {synced, offsetMs, server};
# a server whose time is 120 s ahead (a small SNTP server of this test: chrony
# serves only the host's time) shows in 7.2.2 and as ntp.clock_offset in the
# log; a server that went away turns synced false with ntp.unsynced, and
# requests are still answered. chsmd asks every server on --ntp-port, and
# measures every --ntp-interval-ms (1 s here).
#
# chronyd serves only when started as root ("Not superuser" otherwise; it
# drops nothing here: -u root keeps its files in this test's folder usable).
. "$(dirname "$0")/lib.sh"
it_begin ntp_chrony
API=/gmt0088/v1

command -v chronyd >/dev/null || fail_now "chronyd is not installed: run scripts/install-deps.sh"
[ "$(id -u)" = 0 ] || fail_now "chronyd serves NTP only when started as root: run this test as root (CI does)"

# A UDP port free on 127.0.0.1 and 127.0.0.2 right now.
NTP_PORT=$(python3 -c '
import socket
while True:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(("127.0.0.1", 0))
    p = a.getsockname()[1]
    try:
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.bind(("127.0.0.2", p))
        print(p); break
    except OSError:
        pass')

cat > "$IT_DIR/chrony.conf" <<EOF
port $NTP_PORT
bindaddress 127.0.0.1
allow 127.0.0.1
local stratum 8
cmdport 0
pidfile $IT_DIR/chronyd.pid
driftfile $IT_DIR/chrony.drift
dumpdir $IT_DIR
EOF
chronyd -d -f "$IT_DIR/chrony.conf" -x -u root > "$IT_DIR/chronyd.log" 2>&1 &
CHRONY_PID=$!
IT_BG_PIDS="${IT_BG_PIDS:-} $CHRONY_PID"

# The far-off server: answers SNTP requests on 127.0.0.2 with a time 120 s
# ahead of this host's clock.
python3 - "$NTP_PORT" > "$IT_DIR/faroff.log" 2>&1 <<'PY' &
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.2", int(sys.argv[1])))
def ntp(t):
    t += 2208988800
    return struct.pack("!II", int(t), int((t % 1) * 2**32))
while True:
    req, peer = s.recvfrom(512)
    if len(req) < 48:
        continue
    now = ntp(time.time() + 120)
    # LI 0, VN 4, mode 4 (server), stratum 2; originate = the request's transmit
    head = struct.pack("!BBbbII4s", (0 << 6) | (4 << 3) | 4, 2, 6, -20, 0, 0, b"FAKE")
    s.sendto(head + now + req[40:48] + now + now, peer)
PY
FAROFF_PID=$!
IT_BG_PIDS="${IT_BG_PIDS:-} $FAROFF_PID"

# ---- the run options ----
runopt_rejected() { "$CHSM_BIN/chsmd" run --state-dir "$IT_DIR/none" "$@" >/dev/null 2>&1; [ $? -eq 2 ]; }
check "--ntp-interval-ms below 1000 is refused" runopt_rejected --ntp-interval-ms 999
check "--ntp-port 0 is refused" runopt_rejected --ntp-port 0
check "--ntp-port 65536 is refused" runopt_rejected --ntp-port 65536

chsm_init
chsm_start --ntp-port "$NTP_PORT" --ntp-interval-ms 1000 --log-level debug
enroll_platform

ntp_view() { gmt_request GET $API/chsm/status; [ "$RESP_CODE" = 0 ] && jq -c .data.ntp "$RESP_BODY"; }
# ntp_is JQ: 7.2.2's ntp object satisfies JQ.
ntp_is() { gmt_request GET $API/chsm/status; [ "$RESP_CODE" = 0 ] && jq -e ".data.ntp | $1" "$RESP_BODY" >/dev/null; }
log_has() { grep -q -- "$1" "$CHSMD_LOG"; }

check "no servers configured: not synced, no offset, no server" \
  ntp_is '. == {"synced":false,"offsetMs":null,"server":null}'

# ---- 7.2.5 stays strict: host names and addresses only ----
gmt_request PUT $API/chsm/ntp '{"servers":["127.0.0.1:123"],"enabled":true}'
expect "7.2.5 refuses a server with a port" 1003 400

# ---- a real chrony ----
gmt_request PUT $API/chsm/ntp '{"servers":["127.0.0.1"],"enabled":true}'
expect "7.2.5 names the chrony on loopback" 0 200
check "7.2.2: synced to 127.0.0.1" eventually 30 ntp_is '.synced == true and .server == "127.0.0.1"'
check "7.2.2: offsetMs is a number within 2 s (chrony serves this host's clock)" \
  ntp_is '(.offsetMs | type) == "number" and .offsetMs > -2000 and .offsetMs < 2000'
check "log: ntp.measured from 127.0.0.1" eventually 10 log_has 'event=ntp.measured server=127.0.0.1'
check "chronyd answered as a server (not the system clock's keeper)" grep -q "Disabled control of system clock" "$IT_DIR/chronyd.log"

# The first server that answers counts: nothing listens on 127.0.0.3.
gmt_request PUT $API/chsm/ntp '{"servers":["127.0.0.3","127.0.0.1"],"enabled":true}'
expect "7.2.5 with a silent first server" 0 200
check "7.2.2: synced to the second server" eventually 30 ntp_is '.synced == true and .server == "127.0.0.1"'

# ---- a clock far off the server ----
gmt_request PUT $API/chsm/ntp '{"servers":["127.0.0.2"],"enabled":true}'
expect "7.2.5 names the server 120 s ahead" 0 200
check "7.2.2: synced to 127.0.0.2" eventually 30 ntp_is '.synced == true and .server == "127.0.0.2"'
check "7.2.2: offsetMs about +120000" ntp_is '.offsetMs > 110000 and .offsetMs < 130000'
check "log: ntp.clock_offset warning for 127.0.0.2" \
  eventually 10 log_has 'level=warning event=ntp.clock_offset server=127.0.0.2 offset_ms=1[12][0-9]\{4\}'

# ---- disabled ----
gmt_request PUT $API/chsm/ntp '{"servers":["127.0.0.1"],"enabled":false}'
expect "7.2.5 disables NTP" 0 200
check "7.2.2: not synced when disabled" ntp_is '. == {"synced":false,"offsetMs":null,"server":null}'

# ---- the server goes away ----
gmt_request PUT $API/chsm/ntp '{"servers":["127.0.0.1"],"enabled":true}'
expect "7.2.5 enables NTP again" 0 200
check "7.2.2: synced again" eventually 30 ntp_is '.synced == true and .server == "127.0.0.1"'
kill -TERM "$CHRONY_PID"
wait "$CHRONY_PID" 2>/dev/null
check "7.2.2: not synced once chronyd is gone" eventually 30 ntp_is '. == {"synced":false,"offsetMs":null,"server":null}'
check "log: ntp.unsynced warning" eventually 10 log_has 'level=warning event=ntp.unsynced'
gmt_request GET $API/chsm/status
expect "7.2.2 still answers without a time server" 0 200
check "7.2.2 is still device-signed" device_pub_pem
check "the signature verifies" response_signature_ok "$LAST_NONCE"
gmt_request GET $API/chsm
expect "7.2.1 still answers" 0 200

check "SIGTERM stops chsmd cleanly" chsm_stop
kill "$FAROFF_PID" 2>/dev/null
wait "$FAROFF_PID" 2>/dev/null
it_end
