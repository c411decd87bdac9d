#!/usr/bin/env bash
# Log shipping (PROFILE.md 7.2.7, docs/operations.md "Log shipping"): every
# management request (requestId, key id, interface, target, code), VSM
# state change and task end reaches the configured collector: a real
# rsyslogd over UDP and over TCP (RFC 5424, parsed by rsyslog), and an HTTP
# collector (log_collector.py) that is down while requests are made and
# while chsmd restarts: every record arrives, in order. The level filter
# holds; a full spool drops and counts (chsm_log_dropped_total). Header
# values never reach chsmd's log.
. "$(dirname "$0")/lib.sh"
it_begin logship
API=/gmt0088/v1
COLLECTOR=$(dirname "$0")/log_collector.py
command -v rsyslogd >/dev/null || fail_now "rsyslogd is not installed (scripts/install-deps.sh)"

# ---- a real rsyslogd, as this user, on loopback ----
UPORT=$(free_port)
TPORT=$(free_port)
RS=$IT_DIR/rsyslog
mkdir -p "$RS/work"
cat > "$RS/rsyslog.conf" <<EOF
global(workDirectory="$RS/work")
module(load="imudp")
module(load="imtcp")
input(type="imudp" port="$UPORT" address="127.0.0.1")
input(type="imtcp" port="$TPORT" address="127.0.0.1")
template(name="it" type="string"
         string="%inputname% %syslogfacility-text% %syslogseverity-text% %app-name% %msgid% %structured-data%\n")
action(type="omfile" file="$RS/received.log" template="it")
EOF
rsyslogd -n -f "$RS/rsyslog.conf" -i "$RS/rsyslogd.pid" 2>"$RS/stderr" &
RS_PID=$!
IT_BG_PIDS="${IT_BG_PIDS:-} $RS_PID"
eventually 10 listening 127.0.0.1 "$TPORT" || fail_now "rsyslogd did not start: $(cat "$RS/stderr")"

chsm_init --max-vsms 2
chsm_start
device_pub_pem
enroll_platform

# jqs ARGS...: jq -s -e over a file, quietly.
jqs() { jq -s -e "$@" >/dev/null; }
# received PATTERN: rsyslog wrote a line matching the extended regex.
received() { grep -Eq -- "$1" "$RS/received.log" 2>/dev/null; }

# ---- UDP, level info ----
gmt_request PUT $API/chsm/log-upload-address "{\"url\":\"syslog+udp://127.0.0.1:$UPORT\",\"level\":\"info\"}"
expect "7.2.7 syslog+udp" 0 200
gmt_request GET $API/chsm/status
expect "status" 0 200
RID=$(jq -r .requestId "$RESP_BODY")
check "udp: the request, with requestId, key id, interface, target and code" eventually 10 received \
  "^imudp local0 info chsmd request \[chsm@32473 seq=\"[0-9]+\" request_id=\"$RID\" key_id=\"$SIGN_KEY_ID\" interface=\"7.2.2\" method=\"GET\" target=\"chsm\" code=\"0\" "
gmt_request GET $API/vsms/nosuch
RID_BAD=$(jq -r .requestId "$RESP_BODY")
BAD_CODE=$RESP_CODE
check "udp: a refused request is a warning with its code" eventually 10 received \
  "^imudp local0 warning chsmd request .*request_id=\"$RID_BAD\" .*interface=\"7.3.1\" .*target=\"nosuch\" code=\"$BAD_CODE\""
task_ok "create v1" POST $API/vsms "{\"vsmId\":\"v1\",\"name\":\"one\",\"network\":$(vsm_net 127.0.0.1 "$(free_port)")}"
check "udp: the VSM's state change" eventually 10 received \
  '^imudp local0 info chsmd vsm.state .*vsm="v1" state="stopped"'
check "udp: the task's end" eventually 10 received \
  "^imudp local0 info chsmd task.end .*task=\"$TASK_ID\" operation=\"vsm.create\" target=\"v1\" code=\"0\""

# ---- TCP (RFC 6587 octet counting), level warning ----
gmt_request PUT $API/chsm/log-upload-address "{\"url\":\"syslog+tcp://127.0.0.1:$TPORT\",\"level\":\"warning\"}"
expect "7.2.7 syslog+tcp" 0 200
gmt_request GET $API/chsm/status
RID_INFO=$(jq -r .requestId "$RESP_BODY")
gmt_request GET $API/vsms/nosuch2
RID_BAD=$(jq -r .requestId "$RESP_BODY")
check "tcp: a refused request arrives" eventually 10 received \
  "^imtcp local0 warning chsmd request .*request_id=\"$RID_BAD\" .*target=\"nosuch2\" code=\"$BAD_CODE\""
check "tcp: level warning leaves out info events" bash -c "! grep -q 'request_id=\"$RID_INFO\"' '$RS/received.log'"
task_ok "start v1" POST $API/vsms/v1/start
chsm_kill_vsm() { kill -KILL "$(vsm_pid v1)"; }
check "kill v1's process" chsm_kill_vsm
check "tcp: the fault (a state change, warning)" eventually 10 received \
  '^imtcp local0 warning chsmd vsm.state .*vsm="v1" state="fault"'
# A collector restart: the connection is made again.
kill "$RS_PID"; wait "$RS_PID" 2>/dev/null
rsyslogd -n -f "$RS/rsyslog.conf" -i "$RS/rsyslogd.pid" 2>>"$RS/stderr" &
RS_PID=$!
IT_BG_PIDS="${IT_BG_PIDS:-} $RS_PID"
eventually 10 listening 127.0.0.1 "$TPORT" || fail_now "rsyslogd did not start again"
gmt_request GET $API/vsms/nosuch3
RID_BAD=$(jq -r .requestId "$RESP_BODY")
check "tcp: delivered after the collector restarted" eventually 20 received \
  "^imtcp .* request .*request_id=\"$RID_BAD\""
kill "$RS_PID"; wait "$RS_PID" 2>/dev/null

# ---- HTTP: the collector is down, then chsmd restarts, then it comes ----
HPORT=$(free_port)
HDIR=$IT_DIR/collector
gmt_request PUT $API/chsm/log-upload-address "{\"url\":\"http://127.0.0.1:$HPORT/ingest\",\"level\":\"info\",
  \"headers\":{\"Authorization\":\"Bearer log-s3cret-value\"}}"
expect "7.2.7 http with a header" 0 200
: > "$IT_DIR/rids"
send_requests() {  # N: GET /chsm/status N times, request ids to $IT_DIR/rids
  for _ in $(seq 1 "$1"); do
    gmt_request GET $API/chsm/status
    jq -r .requestId "$RESP_BODY" >> "$IT_DIR/rids"
  done
}
send_requests 8
check "http: chsmd says the collector is down" eventually 10 grep -q 'event=logship.down transport=http' "$CHSMD_LOG"
check "chsmd stops cleanly with records spooled" chsm_stop
check "the spool folder is 0700" [ "$(stat -c %a "$STATE/spool")" = 700 ]
chsm_start
send_requests 5
python3 "$COLLECTOR" --dir "$HDIR" --port "$HPORT" > "$IT_DIR/collector.port" 2>>"$IT_DIR/collector.err" &
COL_PID=$!
IT_BG_PIDS="${IT_BG_PIDS:-} $COL_PID"
# got_all: every request id made arrived as a request record.
got_all() {
  [ -s "$HDIR/records.jsonl" ] || return 1
  jq -r 'select(.event == "request" and .interface == "7.2.2") | .request_id' "$HDIR/records.jsonl" > "$IT_DIR/got"
  grep -qxFf "$IT_DIR/got" "$IT_DIR/rids" && [ "$(grep -cxFf "$IT_DIR/got" "$IT_DIR/rids")" -eq 13 ]
}
check "http: all 13 requests arrive after the outage and a restart (backoff <= 30 s)" eventually 45 got_all
check "http: in the order they were made" cmp -s "$IT_DIR/rids" <(grep -xFf "$IT_DIR/rids" "$IT_DIR/got")
check "http: sequence numbers strictly increase (none lost, none twice)" \
  jqs '[.[].seq] as $s | [range(1; $s | length) | $s[.] > $s[. - 1]] | all' "$HDIR/records.jsonl"
check "http: records carry ts, level, host, app and the key id" \
  jqs --arg k "$SIGN_KEY_ID" '[.[] | select(.event == "request")][0] |
    (.ts | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")) and .level == "info" and .app == "chsmd"
    and .key_id == $k and .code == "0" and (.host | length > 0)' "$HDIR/records.jsonl"
check "http: the configured header and application/json were sent" \
  jqs 'all(.[]; .Authorization == "Bearer log-s3cret-value" and .["Content-Type"] == "application/json")' \
  "$HDIR/headers.jsonl"
check "the header's value never reaches chsmd's log" bash -c "! grep -q 's3cret' '$CHSMD_LOG'"

# ---- a full spool drops and counts ----
kill "$COL_PID"; wait "$COL_PID" 2>/dev/null
chsm_stop
chsm_start --log-spool-bytes 16384
# A request's record is about 300 bytes: 55 of them overflow 16 KiB.
: > "$IT_DIR/rids"
send_requests 55
gmt_request GET $API/metrics
DROPPED=$(grep '^chsm_log_dropped_total ' "$RESP_BODY" | cut -d' ' -f2)
check "metrics: chsm_log_dropped_total counts the dropped records (got ${DROPPED:-none})" \
  [ "${DROPPED:-0}" -gt 0 ]
rm -rf "$HDIR"
python3 "$COLLECTOR" --dir "$HDIR" --port "$HPORT" > "$IT_DIR/collector.port" 2>>"$IT_DIR/collector.err" &
COL_PID=$!
IT_BG_PIDS="${IT_BG_PIDS:-} $COL_PID"
first_arrived() {
  [ -s "$HDIR/records.jsonl" ] && grep -q "$(head -n 1 "$IT_DIR/rids")" "$HDIR/records.jsonl"
}
check "full spool: the oldest records are kept and delivered" eventually 45 first_arrived
check "chsmd logs the drops" eventually 10 grep -q 'event=logship.dropped' "$CHSMD_LOG"
sleep 1
GOT=$(jq -r 'select(.event == "request" and .interface == "7.2.2") | .request_id' "$HDIR/records.jsonl" |
  grep -cxFf - "$IT_DIR/rids")
check "full spool: fewer than the 55 requests arrived ($GOT)" [ "$GOT" -lt 55 ]

kill "$COL_PID"; wait "$COL_PID" 2>/dev/null
check "chsmd stops cleanly" chsm_stop
it_end
