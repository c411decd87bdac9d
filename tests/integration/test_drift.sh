#!/usr/bin/env bash
# Drift (issue #5, docs/chsmctl.md#drift): a VSM whose service died on CHSM A
# is moved by `chsmctl drift` into an empty VSM on CHSM B of the same
# security domain, and serves the same keys there: a signature made on B
# verifies with the public key exported chsm_on A (openssl CLI). Also: a running
# source, a target holding keys, a lost source CHSM without an image, and an
# address still in use are refused with nothing changed; with CHSM A down an
# earlier image is used (its header read by chsmctl), and a wrong --sm3
# surfaces the import's 4008.
. "$(dirname "$0")/lib.sh"
it_begin drift
API=/gmt0088/v1

# ---- two CHSMs: lib.sh tracks one in globals (chsm_save, chsm_on) ----

rc_is() {
  local want=$1 rc=0; shift
  "$@" >"$IT_DIR/out" 2>"$IT_DIR/err" || rc=$?
  [ "$rc" = "$want" ] || { echo "# exit $rc, wanted $want: $(head -c 600 "$IT_DIR/err")"; return 1; }
}
err_has() { grep -qF -- "$1" "$IT_DIR/err" || { echo "# stderr: $(head -c 600 "$IT_DIR/err")"; return 1; }; }
status_of() { gmt_request GET "$API/vsms/$1/status"; resp_data "$2"; }
info_of() { gmt_request GET "$API/vsms/$1"; resp_data "$2"; }
state_is() { [ "$(status_of "$1" .state)" = "$2" ]; }

printf 'the drift test domain secret, 32+' > "$IT_DIR/domain.secret"
mkdir -p "$IT_DIR/images"

STATE=$IT_DIR/a CHSMD_LOG=$IT_DIR/a.log
chsm_init --domain-name drift-test --domain-secret-file "$IT_DIR/domain.secret"
chsm_start
enroll_platform
chsm_save A
STATE=$IT_DIR/b CHSMD_LOG=$IT_DIR/b.log CHSMD_PID=""
chsm_init --domain-name drift-test --domain-secret-file "$IT_DIR/domain.secret"
chsm_start
GMT_HMAC_CODE=$ENROLL_CODE gmt_request PUT $API/auth/platform-key "{\"publicKey\":$(jq -Rs . < "$IT_DIR/platform.pub.pem")}"
expect "B: the same platform key enrolled" 0 200
chsm_save B
check "A and B are in one domain" [ "$(chsm_on A eval 'gmt_request GET $API/chsm; resp_data .domainFingerprint')" = \
  "$(chsm_on B eval 'gmt_request GET $API/chsm; resp_data .domainFingerprint')" ]

# The image upload address of A: the nginx WebDAV fixture when lib.sh has
# it, else a folder.
if declare -F nginx_start >/dev/null && command -v nginx >/dev/null; then
  nginx_start
  UPLOAD_URL=$NGINX_URL/images/
else
  UPLOAD_URL=file://$IT_DIR/images/
fi
chsm_on A gmt_request PUT $API/chsm/image-upload-address "{\"url\":\"$UPLOAD_URL\"}"
expect "A: image upload address $UPLOAD_URL" 0 200

# drift_ctl ARGS: chsmctl drift between A and B, each CHSM pinned and verified.
drift_ctl() {
  "$CHSM_BIN/chsmctl" --key "$IT_DIR/platform.pem" drift \
    --from "$A_BASE" --from-cacert "$A_CACERT" --from-device-fingerprint "$A_DEVICE_FP" \
    --to "$B_BASE" --to-cacert "$B_CACERT" --to-device-fingerprint "$B_DEVICE_FP" --timeout 90 "$@"
}
ctl_a() { chsm_on A ctl "$@"; }

# ---- the source: v1 chsm_on A with a token and keys made through the VSM service ----
P1=$(free_port); P2=$(free_port); P3=$(free_port); P4=$(free_port)
head -c 24 /dev/urandom | base64 -w0 > "$IT_DIR/tok1.b64"
chsm_on A task_ok "A: create v1 with a token (started)" POST $API/vsms "{\"vsmId\":\"v1\",\"name\":\"tenant\",
  \"network\":$(vsm_net 127.0.0.1 "$P1"),\"token\":{\"tokenId\":\"app\",\"secret\":\"$(cat "$IT_DIR/tok1.b64")\"},\"start\":true}"
check "v1: signing key 1 (vsmtool)" vsm_tool "$P1" app "$IT_DIR/tok1.b64" keygen --index 1
check "v1: signing key 2 (vsmtool)" vsm_tool "$P1" app "$IT_DIR/tok1.b64" keygen --index 2
vsm_tool "$P1" app "$IT_DIR/tok1.b64" pubkey --index 1 > "$IT_DIR/old.pem"
check "v1: public key 1 exported" eval 'openssl pkey -pubin -in "$IT_DIR/old.pem" -noout 2>/dev/null'
D1=$(chsm_on A status_of v1 .stateDigest)
check "v1: stateDigest $D1" [ "${#D1}" = 64 ]
check "v1: 2 keys" [ "$(chsm_on A info_of v1 .keyCount)" = 2 ]

# ---- the targets on B: v2, v4 empty; v3 holds a key ----
chsm_on B task_ok "B: create v2 (empty, stopped)" POST $API/vsms "{\"vsmId\":\"v2\",\"name\":\"spare\",\"network\":$(vsm_net 127.0.0.1 "$P2")}"
chsm_on B task_ok "B: create v4 (empty, stopped)" POST $API/vsms "{\"vsmId\":\"v4\",\"name\":\"spare4\",\"network\":$(vsm_net 127.0.0.1 "$P4")}"
head -c 24 /dev/urandom | base64 -w0 > "$IT_DIR/tok3.b64"
chsm_on B task_ok "B: create v3 with a token (started)" POST $API/vsms "{\"vsmId\":\"v3\",\"name\":\"busy\",
  \"network\":$(vsm_net 127.0.0.1 "$P3"),\"token\":{\"tokenId\":\"t3\",\"secret\":\"$(cat "$IT_DIR/tok3.b64")\"},\"start\":true}"
check "v3: a key of its own (vsmtool)" vsm_tool "$P3" t3 "$IT_DIR/tok3.b64" keygen --index 1
chsm_on B task_ok "B: stop v3" POST $API/vsms/v3/stop
D3=$(chsm_on B status_of v3 .stateDigest)

# ---- item 1: the image commands of chsmctl; an earlier image of v1 ----
check "chsmctl vsm export-image v1 --wait" rc_is 0 ctl_a vsm export-image v1 --wait
cp "$IT_DIR/out" "$IT_DIR/export1.json"
IMG1=$(jq -r .result.url "$IT_DIR/export1.json")
SM31=$(jq -r .result.sm3 "$IT_DIR/export1.json")
check "export: url, sm3, 2 keys ($IMG1)" jqt "$IT_DIR/export1.json" \
  '.state == "succeeded" and (.result.url | type == "string") and (.result.sm3 | length == 64) and .result.keyCount == 2'
if [ "${IMG1#file://}" != "$IMG1" ]; then
  check "export: the file's SM3 is the result's sm3" [ "$(sm3_hex "${IMG1#file://}")" = "$SM31" ]
else
  check "export: the file's SM3 is the result's sm3" [ "$(curl -sS "$IMG1" | openssl dgst -sm3 -r | cut -d' ' -f1)" = "$SM31" ]
fi

# ---- refusals: nothing changes ----
check "drift of a running source: refused (exit 3)" rc_is 3 drift_ctl --vsm v1 --target-vsm v2
check "... says why" err_has "is running"
check "... v1 still runs" chsm_on A state_is v1 running

PID1=$(chsm_on A vsm_pid v1)
check "v1's service process found ($PID1)" [ -n "$PID1" ]
kill -KILL "$PID1"
check "v1 in fault after its service was killed" eventually 10 chsm_on A state_is v1 fault

check "drift onto v3, which holds a key: refused (exit 3)" rc_is 3 drift_ctl --vsm v1 --target-vsm v3
check "... says the target holds keys" err_has "holds 1 keys"
check "... v3 unchanged (stopped, same stateDigest)" eval \
  '[ "$(chsm_on B status_of v3 .state)" = stopped ] && [ "$(chsm_on B status_of v3 .stateDigest)" = "$D3" ]'
check "... v1 untouched (still in fault)" chsm_on A state_is v1 fault

# ---- the drift ----
check "chsmctl drift --move-network: exit 0" rc_is 0 drift_ctl --vsm v1 --target-vsm v2 --move-network
cat "$IT_DIR/err" | sed 's/^/# /'
cp "$IT_DIR/out" "$IT_DIR/drift.json"
for s in check-source read-image check-target stop-source export import move-network start verify total; do
  check "a line for step $s with its duration" grep -Eq "^drift: $s +(ok|skipped) +[0-9]+ ms" "$IT_DIR/err"
done
check "summary: a fresh export, the source's digest, network moved" jqt "$IT_DIR/drift.json" \
  ".imageSource == \"export\" and .stateDigest == \"$D1\" and .keyCount == 2 and .networkMoved == true
   and .network.port == $P1 and (.steps | length) == 9"
check "v1 (was in fault) is now stopped on A" chsm_on A state_is v1 stopped
check "v2 runs on B" chsm_on B state_is v2 running
check "v2's stateDigest equals v1's" [ "$(chsm_on B status_of v2 .stateDigest)" = "$D1" ]
check "v2 serves at v1's address" [ "$(chsm_on B info_of v2 .network.port)" = "$P1" ]
check "v2 holds 2 keys" [ "$(chsm_on B info_of v2 .keyCount)" = 2 ]
head -c 5000 /dev/urandom > "$IT_DIR/doc"
check "sign chsm_on B through v1's address and token (vsmtool)" eval \
  'vsm_tool "$P1" app "$IT_DIR/tok1.b64" sign --index 1 --in "$IT_DIR/doc" > "$IT_DIR/sig.b64"'
base64 -d < "$IT_DIR/sig.b64" > "$IT_DIR/sig.der"
check "openssl verifies B's signature with the public key exported on A" eval \
  'openssl dgst -sm3 -verify "$IT_DIR/old.pem" -sigopt distid:1234567812345678 -signature "$IT_DIR/sig.der" "$IT_DIR/doc" | grep -q "Verified OK"'

# ---- CHSM A lost: an earlier image ----
check "stop chsmd A" chsm_on A chsm_stop
check "A down, no --image: refused (exit 3)" rc_is 3 drift_ctl --vsm v1 --target-vsm v4
check "... asks for the image" err_has "does not answer"
check "A down, --move-network while v2 serves that address: refused (exit 3)" \
  rc_is 3 drift_ctl --vsm v1 --target-vsm v4 --image "$IMG1" --sm3 "$SM31" --move-network
check "... says the address answers" err_has "still answers"
check "... v4 unchanged" eval '[ "$(chsm_on B status_of v4 .state)" = stopped ] && [ "$(chsm_on B info_of v4 .keyCount)" = 0 ]'
BAD=$(printf '%s' "$SM31" | tr '0-9a-f' '1-9a-f0')
check "A down, wrong --sm3: the import fails (exit 1)" rc_is 1 drift_ctl --vsm v1 --target-vsm v4 --image "$IMG1" --sm3 "$BAD"
check "... with 4008 first on its line" eval 'grep -Eq "^4008 " "$IT_DIR/err"'
check "... v4 unchanged (stopped, no keys)" eval '[ "$(chsm_on B status_of v4 .state)" = stopped ] && [ "$(chsm_on B info_of v4 .keyCount)" = 0 ]'
check "A down, --image and --sm3: exit 0" rc_is 0 drift_ctl --vsm v1 --target-vsm v4 --image "$IMG1" --sm3 "$SM31"
cat "$IT_DIR/err" | sed 's/^/# /'
check "... the given image was used (header read: vsmId, digest)" jqt "$IT_DIR/out" \
  ".imageSource == \"given\" and .stateDigest == \"$D1\" and .networkMoved == false"
check "... steps: read-image ok, export skipped" eval \
  'grep -Eq "^drift: read-image +ok" "$IT_DIR/err" && grep -Eq "^drift: export +skipped" "$IT_DIR/err"'
check "v4's stateDigest equals v1's" [ "$(chsm_on B status_of v4 .stateDigest)" = "$D1" ]
check "sign through v4 (its own address, v1's token)" eval \
  'vsm_tool "$P4" app "$IT_DIR/tok1.b64" sign --index 1 --in "$IT_DIR/doc" > "$IT_DIR/sig4.b64"'
base64 -d < "$IT_DIR/sig4.b64" > "$IT_DIR/sig4.der"
check "openssl verifies v4's signature with the old public key" eval \
  'openssl dgst -sm3 -verify "$IT_DIR/old.pem" -sigopt distid:1234567812345678 -signature "$IT_DIR/sig4.der" "$IT_DIR/doc" | grep -q "Verified OK"'

chsm_use B
it_end
