#!/usr/bin/env bash
# chsmctl end to end against a real chsmd (docs/chsmctl.md): keys and
# enrollment, every chsm and vsm command with --wait where asynchronous,
# task get, exit statuses and stderr for CHSM errors, failed tasks and
# usage errors, the CHSMCTL_* environment, and the device key pin.
. "$(dirname "$0")/lib.sh"
it_begin chsmctl
chsm_init --max-vsms 4
chsm_start
CTL=$CHSM_BIN/chsmctl
OUT=$IT_DIR/ctl.out
ERR=$IT_DIR/ctl.err

# run COMMAND...: runs it, stdout in $OUT, stderr in $ERR, status in RC.
run() { "$@" >"$OUT" 2>"$ERR"; RC=$?; }
# ok DESCRIPTION CHSMCTL-ARGS...: ctl succeeds (exit 0, JSON on stdout,
# nothing on stderr).
ok() {
  local desc=$1; shift
  run ctl "$@"
  if [ "$RC" = 0 ] && jq -e . "$OUT" >/dev/null 2>&1 && [ ! -s "$ERR" ]; then check "$desc" true
  else check "$desc: exit $RC, stdout $(head -c 200 "$OUT"), stderr $(head -c 200 "$ERR")" false; fi
}
out() { jq -r "$1" "$OUT"; }
# fails DESCRIPTION STATUS STDERR-REGEX CHSMCTL-ARGS...
fails() {
  local desc=$1 status=$2 re=$3; shift 3
  run ctl "$@"
  check "$desc: exit $status (got $RC)" [ "$RC" = "$status" ]
  check "$desc: stderr matches '$re' ($(head -n 1 "$ERR"))" grep -Eq -- "$re" "$ERR"
}

# ---- keys and enrollment ----
run "$CTL" keygen --out "$IT_DIR/ctl.pem"
check "keygen: exit 0" [ "$RC" = 0 ]
KEY_FP=$(sed -n 's/^fingerprint: //p' "$OUT")
openssl pkey -in "$IT_DIR/ctl.pem" -pubout -out "$IT_DIR/ctl.pub.pem"
check "keygen: prints the key's fingerprint" [ "$KEY_FP" = "$(sm2_fingerprint "$IT_DIR/ctl.pub.pem")" ]
check "keygen: file mode 0600" [ "$(stat -c %a "$IT_DIR/ctl.pem")" = 600 ]
cp "$IT_DIR/ctl.pem" "$IT_DIR/ctl.pem.copy"
run "$CTL" keygen --out "$IT_DIR/ctl.pem"
check "keygen onto an existing file: exit 1" [ "$RC" = 1 ]
check "keygen onto an existing file: file unchanged" cmp -s "$IT_DIR/ctl.pem" "$IT_DIR/ctl.pem.copy"
SIGN_KEY=$IT_DIR/ctl.pem SIGN_KEY_ID=$KEY_FP

run "$CTL" --url "$BASE" --cacert "$CACERT" --device-fingerprint "$DEVICE_FP" fingerprint
check "fingerprint before enrollment: not configured" jqt "$OUT" '.configured == false and .fingerprint == null'
fails "chsm info before enrollment" 1 '^2005 ' chsm info
fails "enroll with a wrong code" 1 '^2007 ' enroll --enrollment-code "x${ENROLL_CODE}"
ok "enroll" enroll --enrollment-code "$ENROLL_CODE"
check "enroll: prints the platform key fingerprint" [ "$(out .fingerprint)" = "$KEY_FP" ]
run "$CTL" --url "$BASE" --cacert "$CACERT" --device-fingerprint "$DEVICE_FP" fingerprint
check "fingerprint (no --key): exit 0" [ "$RC" = 0 ]
check "fingerprint: configured, the platform key" jqt "$OUT" ".configured == true and .fingerprint == \"$KEY_FP\""
check "fingerprint: the device key" [ "$(out .deviceKeyFingerprint)" = "$DEVICE_FP" ]
fails "enroll again (code used)" 1 '^2007 ' enroll --enrollment-code "$ENROLL_CODE"

# ---- chsm ----
ok "chsm info" chsm info
check "chsm info: deviceId" [ "$(out .deviceId)" = "$DEVICE_ID" ]
check "chsm info: deviceKeyFingerprint" [ "$(out .deviceKeyFingerprint)" = "$DEVICE_FP" ]
ok "chsm status" chsm status
check "chsm status: running" [ "$(out .state)" = running ]
ok "chsm set-network" chsm set-network --hostname ctl-host \
  --interface name=eth0,address=10.3.0.2/24,gateway=10.3.0.1 --interface name=eth1,address=fd00::2/64 --dns 10.3.0.53
check "set-network: echoes the configuration" jqt "$OUT" \
  '.hostname == "ctl-host" and (.interfaces | length) == 2 and .interfaces[0].gateway == "10.3.0.1" and .dns == ["10.3.0.53"]'
ok "chsm set-ntp" chsm set-ntp --server 127.0.0.1 --server localhost --disabled
IMG_SECRET="Bearer ctl-$(openssl rand -hex 12)"
ok "chsm set-image-upload" chsm set-image-upload --url https://objects.example/chsm/ --header "Authorization: $IMG_SECRET"
check "set-image-upload: the header value is not printed" bash -c "! grep -qF -- '$IMG_SECRET' '$OUT'"
ok "chsm set-log-upload" chsm set-log-upload --url syslog+udp://127.0.0.1:5514 --level error
ok "chsm status-all" chsm status-all
check "status-all: network" jqt "$OUT" '.config.network.hostname == "ctl-host" and (.config.network.interfaces | length) == 2'
check "status-all: NTP" jqt "$OUT" '.config.ntp == {"servers":["127.0.0.1","localhost"],"enabled":false}'
check "status-all: image upload" jqt "$OUT" '.config.imageUploadAddress.url == "https://objects.example/chsm/" and .config.imageUploadAddress.headerNames == ["Authorization"]'
check "status-all: log upload" jqt "$OUT" '.config.logUploadAddress.url == "syslog+udp://127.0.0.1:5514" and .config.logUploadAddress.level == "error"'
check "status-all: the header value is not shown" bash -c "! grep -qF -- '$IMG_SECRET' '$OUT'"
check "status-all: platform key" [ "$(out .config.platformKeyFingerprint)" = "$KEY_FP" ]
fails "set-ntp through --body without servers" 1 '^1002 ' chsm set-ntp --body '{}'
fails "set-log-upload with a bad level" 2 'level' chsm set-log-upload --url syslog+udp://127.0.0.1:5514 --level debug

# ---- vsm ----
P1=$(free_port)
# The token file holds the secret in base64, as vsmtool reads it.
head -c 32 /dev/urandom | base64 -w0 > "$IT_DIR/tok1"
cp "$IT_DIR/tok1" "$IT_DIR/tok1.orig"
ok "vsm create --wait" vsm create --id c1 --name "ctl one" --ip 127.0.0.1 --prefix 8 --port "$P1" \
  --token-id app --token-secret-file "$IT_DIR/tok1" --max-keys 10 --max-sessions 20 --memory-mib 32 --wait
check "create --wait: prints the final task" jqt "$OUT" '.operation == "vsm.create" and .target == "c1" and .state == "succeeded" and .code == 0'
check "create --wait: result is the VSM" jqt "$OUT" '.result.resources == {"maxKeys":10,"maxSessions":20,"memoryMiB":32} and .result.token.configured == true'
check "create: the secret file is left as it was" cmp -s "$IT_DIR/tok1" "$IT_DIR/tok1.orig"
check "create: the secret is not printed" bash -c "! grep -qF -- '$(cat "$IT_DIR/tok1")' '$OUT'"
P2=$(free_port)
ok "vsm create (no --wait)" vsm create --id c2 --name two --ip 127.0.0.1 --prefix 8 --port "$P2"
check "create: prints the accepted task" jqt "$OUT" '.state == "pending" and .operation == "vsm.create" and .target == "c2"'
T2=$(out .taskId)
ok "task get" task get "$T2"
check "task get: the task" jqt "$OUT" ".taskId == \"$T2\" and (.callback | has(\"delivered\"))"
ok "task get --wait" task get "$T2" --wait
check "task get --wait: succeeded" [ "$(out .state)" = succeeded ]
ok "vsm list" vsm list
check "vsm list: both VSMs" jqt "$OUT" '[.vsms[].vsmId] | sort == ["c1","c2"]'
ok "vsm info" vsm info c1
check "vsm info: details" jqt "$OUT" ".vsmId == \"c1\" and .name == \"ctl one\" and .state == \"stopped\" and .serviceEndpoint == \"127.0.0.1:$P1\""
ok "vsm start --wait" vsm start c1 --wait
check "vsm start --wait: succeeded" [ "$(out .state)" = succeeded ]
check "vsm start: c1 listens" listening 127.0.0.1 "$P1"
ok "vsm status" vsm status c1
check "vsm status: running" jqt "$OUT" '.state == "running" and (.stateDigest | test("^[0-9a-f]{64}$"))'
SV=$(out .stateVersion)
ok "vsm restart --wait (global option first)" --wait vsm restart c1
check "restart: still listens" listening 127.0.0.1 "$P1"
P3=$(free_port)
ok "vsm set-network" vsm set-network c2 --ip 127.0.0.1 --prefix 8 --port "$P3" --gateway 127.0.0.254
check "set-network: new endpoint" jqt "$OUT" ".serviceEndpoint == \"127.0.0.1:$P3\" and .network.gateway == \"127.0.0.254\""
head -c 20 /dev/urandom | base64 > "$IT_DIR/tok2"   # with its final newline
ok "vsm set-token" vsm set-token c1 --token-id app2 --token-secret-file "$IT_DIR/tok2"
check "set-token: tokenId, stateVersion grew" jqt "$OUT" ".token.tokenId == \"app2\" and .stateVersion > $SV"
check "set-token: vsmtool authenticates with the same file" vsm_tool "$P1" app2 "$IT_DIR/tok2" random --bytes 4
ok "vsm stop --wait" vsm stop c1 --wait
check "stop: no longer listens" not_listening 127.0.0.1 "$P1"
ok "vsm reset --wait" vsm reset c1 --wait
ok "vsm info after reset" vsm info c1
check "reset: token gone" jqt "$OUT" '.token.configured == false and .state == "stopped"'
ok "vsm create with --start and a generated id" --wait vsm create --name three --ip 127.0.0.2 --prefix 8 --port "$P1" --start
G=$(out .target)
check "generated id ($G) runs" eval 'vsm_state_is "$G" running'
ok "vsm delete --wait" vsm delete "$G" --wait
check "delete: zeroized" jqt "$OUT" '.result.zeroized == true'
check "delete: no longer listens" not_listening 127.0.0.2 "$P1"

# ---- idempotency through the CLI ----
ok "start with an idempotency key" --idempotency-key ctl-start-1 vsm start c2
FIRST=$(out .taskId)
ok "the same request and key again" --idempotency-key ctl-start-1 vsm start c2
check "idempotency: the first answer again" [ "$(out .taskId)" = "$FIRST" ]
fails "the same key for another request" 1 '^3010 ' --idempotency-key ctl-start-1 vsm stop c2
ok "follow that task" task get "$FIRST" --wait
check "idempotency: one start, succeeded" [ "$(out .state)" = succeeded ]

# ---- failures ----
fails "vsm info of an unknown VSM" 1 '^3001 VSM not found' vsm info nosuch
check "... prints nothing on stdout" [ ! -s "$OUT" ]
run ctl --json vsm info nosuch
check "--json on an error: exit 1" [ "$RC" = 1 ]
check "--json on an error: the envelope" jqt "$OUT" '.code == 3001 and (.requestId | length) > 0 and (has("data") | not)'
fails "start a running VSM" 1 '^3003 ' vsm start c2
# a VSM whose port another process holds: its start task fails with 3009
check "another process holds a port" hold_port 0
TAKEN=$HELD_PORT
ok "create a VSM on a taken port" --wait vsm create --id busy --name busy --ip 127.0.0.1 --prefix 8 --port "$TAKEN"
fails "--wait on a failing task" 1 '^3009 ' vsm start busy --wait
check "--wait on a failing task: prints the final task" jqt "$OUT" '.state == "failed" and .code == 3009'
kill "$HOLDER_PID" 2>/dev/null

fails "usage: vsm info without ID" 2 'chsmctl' vsm info
fails "usage: unknown option" 2 'chsmctl' vsm list --bogus
fails "usage: unknown command" 2 'chsmctl' vsm explode c1
fails "usage: malformed VSM ID" 2 'chsmctl' vsm info 'bad/id'
fails "usage: port out of range" 2 'chsmctl' vsm set-network c2 --ip 127.0.0.1 --prefix 8 --port 70000
fails "usage: --ip without --port" 2 'chsmctl' vsm create --name x --ip 127.0.0.1
fails "usage: unreadable secret file" 2 'chsmctl' vsm set-token c2 --token-id t --token-secret-file "$IT_DIR/nonexistent"
head -c 32 /dev/urandom > "$IT_DIR/tok.raw"
fails "usage: a secret file of raw bytes, not base64" 2 'base64' vsm set-token c2 --token-id t --token-secret-file "$IT_DIR/tok.raw"
head -c 8 /dev/urandom | base64 > "$IT_DIR/tok.short"
fails "usage: a secret of 8 bytes" 2 '16 to 64 bytes' vsm set-token c2 --token-id t --token-secret-file "$IT_DIR/tok.short"
check "usage errors print nothing on stdout" [ ! -s "$OUT" ]
run "$CTL" --help
check "--help: exit 0 with usage" eval '[ "$RC" = 0 ] && grep -q "^usage: chsmctl" "$OUT"'

# ---- environment instead of flags ----
run env CHSMCTL_URL="$BASE" CHSMCTL_KEY="$SIGN_KEY" CHSMCTL_CACERT="$CACERT" \
  CHSMCTL_DEVICE_FINGERPRINT="$DEVICE_FP" "$CTL" vsm info c2
check "CHSMCTL_* variables instead of flags" eval '[ "$RC" = 0 ] && [ "$(out .vsmId)" = c2 ]'
run env CHSMCTL_URL="$BASE" CHSMCTL_KEY="$SIGN_KEY" CHSMCTL_CACERT="" \
  CHSMCTL_DEVICE_FINGERPRINT="${DEVICE_FP^^}" "$CTL" chsm status
check "the fingerprint pin alone (upper case) authenticates the CHSM" eval '[ "$RC" = 0 ] && [ "$(out .state)" = running ]'
run env CHSMCTL_URL="http://127.0.0.1:1" CHSMCTL_KEY="$SIGN_KEY" CHSMCTL_CACERT="$CACERT" \
  CHSMCTL_DEVICE_FINGERPRINT="$DEVICE_FP" "$CTL" --url "$BASE" chsm info
check "a flag wins over its variable" [ "$RC" = 0 ]
run env CHSMCTL_URL="$BASE" CHSMCTL_KEY="$SIGN_KEY" "$CTL" chsm info
check "nothing authenticates the CHSM: refused, exit 2 (got $RC)" [ "$RC" = 2 ]

# ---- the device key pin ----
WRONG=$(printf '%064d' 0)
run "$CTL" --url "$BASE" --key "$SIGN_KEY" --cacert "$CACERT" --device-fingerprint "$WRONG" vsm list
check "a device fingerprint that does not match: refused (exit $RC)" [ "$RC" = 1 ]
check "... saying so ($(head -n 1 "$ERR"))" grep -q '^chsmctl: ' "$ERR"
check "... and prints nothing" [ ! -s "$OUT" ]
run "$CTL" --url "$BASE" --key "$SIGN_KEY" --device-fingerprint "$WRONG" --insecure chsm status
check "a wrong pin is refused even with --insecure (exit $RC)" [ "$RC" = 1 ]
run "$CTL" --url "$BASE" --key "$SIGN_KEY" --device-fingerprint not-hex chsm status
check "a malformed pin is a usage error (exit $RC)" [ "$RC" = 2 ]
run "$CTL" --url "$BASE" --key "$SIGN_KEY" --insecure chsm status
check "--insecure alone: trust on first use works (exit $RC)" [ "$RC" = 0 ]

check "SIGTERM stops chsmd cleanly" chsm_stop
it_end
