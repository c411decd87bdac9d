#!/usr/bin/env bash
# Images (PROFILE.md §9-§10): 7.3.5/7.3.6 VSM images, 7.2.8/7.2.9 CHSM
# images, 7.2.12/7.2.13 backup and restore, between three CHSMs on
# loopback: A and B in one security domain, C in another (and D, of A's
# domain with room for one VSM, for 3004). Keys are made
# through the VSM service (vsmtool); a key exported from a running VSM of A
# signs on B, verified by the openssl CLI with A's public key; every import
# check fails with its exact code (4001-4008) and leaves the target exactly
# as it was, also when chsmd is killed in the middle of an import. Images
# travel over file:// and over HTTP (nginx WebDAV PUT and GET).
. "$(dirname "$0")/lib.sh"
it_begin images
F=/gmt0088/v1

# ---- three CHSMs (lib.sh keeps one in its globals: chsm_save/chsm_use;
# it_cleanup stops them all) ----

printf 'the-shared-domain-secret\n' > "$IT_DIR/domain1"
printf 'another-domain-secret\n' > "$IT_DIR/domain2"

# new_chsm NAME DOMAINFILE [INIT OPTIONS]: inits and starts a CHSM, enrolls
# the platform key (one platform key for all of them), and saves it as NAME.
new_chsm() {
  STATE=$IT_DIR/$1 CHSMD_LOG=$IT_DIR/$1.log
  chsm_init --domain-name "dom-$2" --domain-secret-file "$IT_DIR/$2" "${@:3}"
  chsm_start
  if [ -z "${SIGN_KEY:-}" ]; then
    enroll_platform
  else
    GMT_HMAC_CODE=$ENROLL_CODE gmt_request PUT $F/auth/platform-key \
      "{\"publicKey\":$(jq -Rs . < "$IT_DIR/platform.pub.pem")}"
    [ "$RESP_CODE" = 0 ] || fail_now "enroll $1: $(cat "$RESP_BODY")"
  fi
  mkdir -p "$IT_DIR/up-$1"
  chsm_save "$1"
}
new_chsm A domain1
new_chsm B domain1
new_chsm C domain2

# upload_to DIR: the 7.2.6 address of the current CHSM is file://DIR/.
upload_to() {
  gmt_request PUT $F/chsm/image-upload-address "{\"url\":\"file://$1/\"}"
  expect "7.2.6 file://$1/" 0 200
}
# status_of ID: "stateVersion keyCount stateDigest" of a VSM (7.3.1 + 7.3.2).
status_of() {
  local sv kc
  gmt_request GET "$F/vsms/$1"; sv=$(resp_data .stateVersion); kc=$(resp_data .keyCount)
  gmt_request GET "$F/vsms/$1/status"; echo "$sv $kc $(resp_data .stateDigest)"
}
digest_of() { gmt_request GET "$F/vsms/$1/status"; resp_data .stateDigest; }
# task_fails DESC CODE METHOD TARGET [BODY]: accepted, and the task fails
# with CODE.
task_fails() {
  local desc=$1 code=$2; shift 2
  gmt_request "$@"
  expect "$desc: accepted" 0 202
  wait_task "$(resp_data .taskId)"
  check "$desc: task fails with $code (got ${TASK_STATE:-?} ${TASK_CODE:-?}: $(resp_data .message))" \
    [ "${TASK_STATE:-}/${TASK_CODE:-}" = "failed/$code" ]
}
# create_vsm ID PORT [TOKENFILE]: a stopped VSM on 127.0.0.1:PORT, with a
# token "ID-app" of the secret in TOKENFILE (base64) when given.
create_vsm() {
  local tok=""
  [ -z "${3:-}" ] || tok=",\"token\":{\"tokenId\":\"$1-app\",\"secret\":\"$(cat "$3")\"}"
  task_ok "create $1" POST $F/vsms "{\"vsmId\":\"$1\",\"name\":\"VSM $1\",\"network\":$(vsm_net 127.0.0.1 "$2")$tok}"
}
path_of() { printf '%s' "${1#file://}"; }

# ---- 7.3.5 on A: a running VSM with keys made through the VSM service ----
chsm_use A
gmt_request POST $F/vsms/src/image/export '{}'
expect "7.3.5 of an unknown VSM" 3001 404
openssl rand -base64 24 | tr -d '\n' > "$IT_DIR/src.b64"
PS=$(free_port)
create_vsm src "$PS" "$IT_DIR/src.b64"
gmt_request POST $F/vsms/src/image/export '{}'
expect "7.3.5 without an upload address" 3007 409
upload_to "$IT_DIR/up-A"
task_ok "start src" POST $F/vsms/src/start
check "src: signing key 1 (vsmtool)" vsm_tool "$PS" src-app "$IT_DIR/src.b64" keygen --index 1
check "src: signing key 2 (vsmtool)" vsm_tool "$PS" src-app "$IT_DIR/src.b64" keygen --index 2
check "src: a KEK at 3 (vsmtool)" vsm_tool "$PS" src-app "$IT_DIR/src.b64" kek-gen --index 3
vsm_tool "$PS" src-app "$IT_DIR/src.b64" pubkey --index 1 > "$IT_DIR/src1.pub.pem"
check "src: public key 1" grep -q 'BEGIN PUBLIC KEY' "$IT_DIR/src1.pub.pem"
read -r SRC_SV SRC_KC SRC_DIGEST < <(status_of src)

task_ok "7.3.5 export src while it runs" POST $F/vsms/src/image/export '{}'
cp "$RESP_BODY" "$IT_DIR/export.json"
IMG_URL=$(jq -r .data.result.url "$IT_DIR/export.json")
IMG_SM3=$(jq -r .data.result.sm3 "$IT_DIR/export.json")
IMG=$(path_of "$IMG_URL")
head -c 100 /dev/urandom > "$IT_DIR/msg.bin"
check "src keeps serving: vsmtool signs right after the export" \
  eval 'vsm_tool "$PS" src-app "$IT_DIR/src.b64" sign --index 1 --in "$IT_DIR/msg.bin" > "$IT_DIR/sig0.b64"'
check "src is still running" vsm_state_is src running
check "7.3.5 result: imageId, vsmId, keyCount, stateVersion, stateDigest" jqt "$IT_DIR/export.json" \
  ".data.result | (.imageId | startswith(\"img-\")) and .vsmId == \"src\" and .keyCount == 3
   and .stateVersion == $SRC_SV and .stateDigest == \"$SRC_DIGEST\""
check "7.3.5 result: url is the uploaded object <imageId>.img" jqt "$IT_DIR/export.json" \
  ".data.result | .url == \"file://$IT_DIR/up-A/\" + .imageId + \".img\""
check "the image is where the url says" [ -f "$IMG" ]
check "7.3.5 result: sizeBytes is the file's size" [ "$(jq -r .data.result.sizeBytes "$IT_DIR/export.json")" = "$(stat -c %s "$IMG")" ]
check "7.3.5 result: sm3 is the file's SM3 (openssl)" [ "$IMG_SM3" = "$(sm3_hex "$IMG")" ]
check "chsm-image inspect accepts the image" "$CHSM_BIN/chsm-image" inspect "$IMG"
"$CHSM_BIN/chsm-image" inspect "$IMG" > "$IT_DIR/inspect.txt" 2>&1
# (compared in hex: the secret's raw bytes may hold a newline, which would
# make grep -F search for its pieces)
hex_of() { od -An -tx1 -v | tr -d ' \n'; }
check "the image does not hold the token secret in clear" \
  eval '! hex_of < "$IMG" | grep -q "$(base64 -d < "$IT_DIR/src.b64" | head -c 16 | hex_of)"'
check "no temporary image is left in A's state dir" eval '[ -z "$(ls -A "$IT_DIR/A/tmp")" ]'

# ---- 7.3.6 into an empty stopped VSM on B ----
chsm_use B
PD=$(free_port)
create_vsm dst "$PD"
gmt_request POST $F/vsms/dst/image/export '{}'
expect "7.3.5 on B without an upload address" 3007 409
DL="{\"url\":\"$IMG_URL\",\"sm3\":\"$IMG_SM3\"}"
task_ok "7.3.6 import src's image into dst" POST $F/vsms/dst/image/import "$DL"
check "7.3.6 result: vsmId, sourceVsmId, sourceDeviceId, keyCount" jqt "$RESP_BODY" \
  ".data.result == {\"vsmId\":\"dst\",\"sourceVsmId\":\"src\",\"sourceDeviceId\":\"$A_DEVICE_ID\",\"keyCount\":3}"
check "dst is stopped after the import" vsm_state_is dst stopped
gmt_request GET $F/vsms/dst
check "dst keeps its id, name and network; takes the token" jqt "$RESP_BODY" \
  ".data.name == \"VSM dst\" and .data.network.port == $PD and .data.token.tokenId == \"src-app\" and .data.keyCount == 3"
check "dst's stateDigest equals src's" [ "$(digest_of dst)" = "$SRC_DIGEST" ]
task_ok "start dst" POST $F/vsms/dst/start
check "dst signs with the imported key (vsmtool, src's token)" \
  eval 'vsm_tool "$PD" src-app "$IT_DIR/src.b64" sign --index 1 --in "$IT_DIR/msg.bin" > "$IT_DIR/sig1.b64"'
base64 -d < "$IT_DIR/sig1.b64" > "$IT_DIR/sig1.der"
check "its signature verifies with src's public key (openssl)" \
  openssl dgst -sm3 -verify "$IT_DIR/src1.pub.pem" -sigopt distid:$DISTID -signature "$IT_DIR/sig1.der" "$IT_DIR/msg.bin"
gmt_request POST $F/vsms/dst/image/import "$DL"
expect "7.3.6 into a running VSM" 3003 409
task_ok "stop dst" POST $F/vsms/dst/stop
gmt_request POST $F/vsms/dst/image/import "$DL"
expect "7.3.6 into a stopped VSM that holds keys" 3003 409

# ---- failed imports leave the target exactly as it was ----
PE=$(free_port)
create_vsm e1 "$PE"
E1_BEFORE=$(status_of e1)
# import_fails DESC CODE BODY: into e1, failing with CODE, e1 unchanged.
import_fails() {
  task_fails "$1" "$2" POST $F/vsms/e1/image/import "$3"
  check "$1: e1 unchanged (stateVersion, keyCount, stateDigest)" [ "$(status_of e1)" = "$E1_BEFORE" ]
  check "$1: e1 stopped" vsm_state_is e1 stopped
}
# an image of C (another domain)
chsm_use C
upload_to "$IT_DIR/up-C"
openssl rand -base64 16 | tr -d '\n' > "$IT_DIR/c.b64"
PC=$(free_port)
create_vsm cv "$PC" "$IT_DIR/c.b64"
task_ok "7.3.5 on C (another domain)" POST $F/vsms/cv/image/export '{}'
C_URL=$(resp_data .result.url) C_SM3=$(resp_data .result.sm3)
chsm_use B
import_fails "an image of another security domain" 4007 "{\"url\":\"$C_URL\",\"sm3\":\"$C_SM3\"}"
import_fails "a wrong sm3" 4008 "{\"url\":\"$IMG_URL\",\"sm3\":\"$(printf '%064d' 0)\"}"
SIZE=$(stat -c %s "$IMG")
head -c $((SIZE / 2)) "$IMG" > "$IT_DIR/trunc.img"
import_fails "a truncated image (its own sm3)" 4003 "{\"url\":\"file://$IT_DIR/trunc.img\",\"sm3\":\"$(sm3_hex "$IT_DIR/trunc.img")\"}"
# a flipped byte in the payload: the signature (checked before the MAC) fails
HLEN=$(od -An -tu1 -j12 -N4 "$IMG" | awk '{print $1*16777216 + $2*65536 + $3*256 + $4}')
OFF=$((16 + HLEN + 10))
cp "$IMG" "$IT_DIR/flip.img"
B=$(od -An -tu1 -j$OFF -N1 "$IMG" | tr -d ' ')
printf "$(printf '\\%03o' $((B ^ 1)))" | dd of="$IT_DIR/flip.img" bs=1 seek=$OFF conv=notrunc status=none
import_fails "a flipped payload byte" 4001 "{\"url\":\"file://$IT_DIR/flip.img\",\"sm3\":\"$(sm3_hex "$IT_DIR/flip.img")\"}"
import_fails "a missing file" 4005 "{\"url\":\"file://$IT_DIR/nothing-here.img\",\"sm3\":\"$IMG_SM3\"}"
# a CHSM image or backup is not a VSM image (4003): made below, checked there

# ---- upload failures ----
chsm_use A
: > "$IT_DIR/a-file"
upload_to "$IT_DIR/a-file/sub"
task_fails "7.3.5 to an unwritable location" 4004 POST $F/vsms/src/image/export '{}'
check "src still runs after a failed export" vsm_state_is src running
check "no temporary image is left after a failed upload" eval '[ -z "$(ls -A "$IT_DIR/A/tmp")" ]'

# ---- over HTTP: nginx (WebDAV PUT and GET, lib.sh's fixture) ----
nginx_start
gmt_request PUT $F/chsm/image-upload-address "{\"url\":\"$NGINX_URL/auth/images/\"}"
expect "7.2.6 nginx /auth/ without its header" 0 200
task_fails "7.3.5 refused by nginx (403)" 4004 POST $F/vsms/src/image/export '{}'
gmt_request PUT $F/chsm/image-upload-address \
  "{\"url\":\"$NGINX_URL/auth/images/\",\"headers\":{\"Authorization\":\"Bearer test-token\"}}"
expect "7.2.6 nginx /auth/ with its bearer header" 0 200
task_ok "7.3.5 to nginx (HTTP PUT with the configured header)" POST $F/vsms/src/image/export '{}'
H_URL=$(resp_data .result.url) H_SM3=$(resp_data .result.sm3) H_ID=$(resp_data .result.imageId)
check "7.3.5 over HTTP: the url is the object on nginx" [ "$H_URL" = "$NGINX_URL/auth/images/$H_ID.img" ]
check "nginx stored the image; its sm3 (openssl) is the result's" \
  [ "$(sm3_hex "$NGINX_WWW/auth/images/$H_ID.img")" = "$H_SM3" ]
mkdir -p "$NGINX_WWW/pub" && cp "$NGINX_WWW/auth/images/$H_ID.img" "$NGINX_WWW/pub/src.img"
upload_to "$IT_DIR/up-A"
chsm_use B
PH=$(free_port)
create_vsm h1 "$PH"
task_fails "7.3.6 from nginx /auth/ (403 without a header)" 4005 POST $F/vsms/h1/image/import \
  "{\"url\":\"$H_URL\",\"sm3\":\"$H_SM3\"}"
task_fails "7.3.6 from nginx, no such object (404)" 4005 POST $F/vsms/h1/image/import \
  "{\"url\":\"$NGINX_URL/pub/nothing.img\",\"sm3\":\"$H_SM3\"}"
task_ok "7.3.6 from nginx (HTTP GET)" POST $F/vsms/h1/image/import "{\"url\":\"$NGINX_URL/pub/src.img\",\"sm3\":\"$H_SM3\"}"
check "h1 holds src's keys and token (stateDigest)" [ "$(digest_of h1)" = "$SRC_DIGEST" ]
nginx_stop
chsm_use A

# ---- 7.2.8 / 7.2.9: CHSM images ----
PS2=$(free_port)
create_vsm s2 "$PS2"
task_ok "7.2.8 export CHSM image of A" POST $F/chsm/image/export '{}'
cp "$RESP_BODY" "$IT_DIR/chsm-export.json"
CI_URL=$(resp_data .result.url) CI_SM3=$(resp_data .result.sm3)
check "7.2.8 result: imageId, url, sizeBytes, sm3, vsmIds" jqt "$IT_DIR/chsm-export.json" \
  '.data.result | (.imageId | startswith("img-")) and (.imageId as $i | .url | endswith($i + ".img")) and .sizeBytes > 0
   and (.sm3 | length == 64) and .vsmIds == ["s2","src"]'
check "the CHSM image's sm3 is the file's" [ "$CI_SM3" = "$(sm3_hex "$(path_of "$CI_URL")")" ]
check "chsm-image inspect accepts the CHSM image" "$CHSM_BIN/chsm-image" inspect "$(path_of "$CI_URL")"
chsm_use B
import_fails "a CHSM image given to 7.3.6" 4003 "{\"url\":\"$CI_URL\",\"sm3\":\"$CI_SM3\"}"
task_ok "7.2.9 import A's CHSM image on B" POST $F/chsm/image/import "{\"url\":\"$CI_URL\",\"sm3\":\"$CI_SM3\"}"
check "7.2.9 result lists the VSMs" jqt "$RESP_BODY" '.data.result.vsmIds == ["s2","src"]'
check "src re-created on B, stopped" vsm_state_is src stopped
check "s2 re-created on B, stopped" vsm_state_is s2 stopped
check "src on B has src's keys and token (stateDigest)" [ "$(digest_of src)" = "$SRC_DIGEST" ]
gmt_request GET $F/vsms/src
check "src on B keeps its network" jqt "$RESP_BODY" ".data.network.port == $PS and .data.keyCount == 3"
task_fails "7.2.9 again: the VSMs exist" 3002 POST $F/chsm/image/import "{\"url\":\"$CI_URL\",\"sm3\":\"$CI_SM3\"}"
task_ok "7.2.9 again with replaceExisting" POST $F/chsm/image/import "{\"url\":\"$CI_URL\",\"sm3\":\"$CI_SM3\",\"replaceExisting\":true}"
check "src on B after the replace: same digest" [ "$(digest_of src)" = "$SRC_DIGEST" ]
# an imported VSM keeps its address: one taken by another VSM is 3009, and
# the whole import is undone: s2 (first in the image, replaced before src
# clashes) keeps the token it got on B since
gmt_request PUT $F/vsms/s2/token "{\"tokenId\":\"b-only\",\"secret\":\"$(openssl rand -base64 16)\"}"
expect "a token for s2 on B" 0 200
task_ok "delete src on B" DELETE $F/vsms/src
create_vsm clash "$PS"
S2_B=$(status_of s2)
task_fails "7.2.9 while src's address is taken on B" 3009 POST $F/chsm/image/import \
  "{\"url\":\"$CI_URL\",\"sm3\":\"$CI_SM3\",\"replaceExisting\":true}"
check "after the 3009: s2 exactly as before (stateVersion, keyCount, stateDigest)" [ "$(status_of s2)" = "$S2_B" ]
gmt_request GET $F/vsms/src
expect "after the 3009: src not re-created" 3001 404
task_ok "delete clash" DELETE $F/vsms/clash
# more VSMs than the capacity: 3004, nothing created
new_chsm D domain1 --max-vsms 1
task_fails "7.2.9 of two VSMs on a CHSM of maxVsms 1" 3004 POST $F/chsm/image/import \
  "{\"url\":\"$CI_URL\",\"sm3\":\"$CI_SM3\"}"
gmt_request GET $F/vsms
check "D holds no VSM after the 3004" jqt "$RESP_BODY" '.data.vsms == []'
chsm_use B
task_fails "7.2.9 of a VSM image" 4003 POST $F/chsm/image/import "{\"url\":\"$C_URL\",\"sm3\":\"$C_SM3\"}"
chsm_use C
task_ok "7.2.8 on C (another domain)" POST $F/chsm/image/export '{}'
CC_URL=$(resp_data .result.url) CC_SM3=$(resp_data .result.sm3)
chsm_use B
task_fails "7.2.9 of C's CHSM image (another domain)" 4007 POST $F/chsm/image/import "{\"url\":\"$CC_URL\",\"sm3\":\"$CC_SM3\"}"

# ---- crash in the middle of an import: the target is exactly as before ----
chsm_stop
CHSM_TEST_IMPORT_DELAY_MS=20000 chsm_start
PK=$(free_port)
create_vsm cr "$PK"
CR_BEFORE=$(status_of cr)
MARK=$(wc -l < "$CHSMD_LOG")
gmt_request POST $F/vsms/cr/image/import "$DL"
expect "import into cr (chsmd will be killed inside its transaction)" 0 202
CR_TASK=$(resp_data .taskId)
in_apply() { tail -n +"$((MARK + 1))" "$CHSMD_LOG" | grep -q 'event=test.import_delay.*phase=apply'; }
check "the import reached its transaction" eventually 30 in_apply
chsm_kill
chsm_start
chsm_save B
wait_task "$CR_TASK"
check "after the crash the import task is failed (5000)" [ "$TASK_STATE/$TASK_CODE" = failed/5000 ]
check "cr is exactly as before (stateVersion, keyCount, stateDigest)" [ "$(status_of cr)" = "$CR_BEFORE" ]
check "cr is stopped" vsm_state_is cr stopped
check "no temporary image is left in B's state dir" eval '[ -z "$(ls -A "$IT_DIR/B/tmp")" ]'
task_ok "the same import, without a crash" POST $F/vsms/cr/image/import "$DL"
check "cr then holds src's keys" [ "$(digest_of cr)" = "$SRC_DIGEST" ]

# ---- crash with an export still queued: the VSM it exports runs again.
# Two exports to an upload address that never answers (a socket that
# listens and never accepts) hold both task workers for up to 30 s (the
# transfer's low-speed limit), so the export of the running dst, queued
# behind them, is pending when chsmd is killed. After the restart dst runs
# and serves while that export is still queued: an export does not decide
# whether a VSM runs (it was left "running" without a process). ----
task_ok "start dst" POST $F/vsms/dst/start
create_vsm q1 "$(free_port)"
create_vsm q2 "$(free_port)"
BH_PORT=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16); time.sleep(900)' "$BH_PORT" &
BH_PID=$!; IT_BG_PIDS="${IT_BG_PIDS:-} $BH_PID"
bh_up() { (exec 3<>"/dev/tcp/127.0.0.1/$BH_PORT") 2>/dev/null; }
eventually 10 bh_up || fail_now "the silent upload server did not start"
gmt_request PUT $F/chsm/image-upload-address "{\"url\":\"http://127.0.0.1:$BH_PORT/img/\"}"
expect "7.2.6 an upload address that never answers" 0 200
gmt_request POST $F/vsms/q1/image/export '{}'
expect "export q1 (its upload hangs)" 0 202
gmt_request POST $F/vsms/q2/image/export '{}'
expect "export q2 (its upload hangs)" 0 202
gmt_request POST $F/vsms/dst/image/export '{}'
expect "export dst, queued behind them" 0 202
EX_TASK=$(resp_data .taskId)
[ -n "$EX_TASK" ] || fail_now "the export of dst was not accepted"
gmt_request GET "/gmt0088/v1/tasks/$EX_TASK"
check "the export of dst is pending at the kill" [ "$(resp_data .state)" = pending ]
chsm_kill
chsm_start
chsm_save B
check "dst is running after the restart" eventually 15 vsm_state_is dst running
check "dst serves after the restart (vsmtool, src's token)" \
  vsm_tool "$PD" src-app "$IT_DIR/src.b64" pubkey --index 1
gmt_request GET "/gmt0088/v1/tasks/$EX_TASK"
check "while its export is still queued or running ($(resp_data .state))" \
  eval '[ "$(resp_data .state)" = pending ] || [ "$(resp_data .state)" = running ]'
kill "$BH_PID"; wait "$BH_PID" 2>/dev/null
wait_task "$EX_TASK"
check "dst's export ends once the upload server is gone (${TASK_STATE:-?})" [ "$TASK_STATE" = failed ]
check "dst still runs after its failed export" vsm_state_is dst running
task_ok "delete q1" DELETE $F/vsms/q1
task_ok "delete q2" DELETE $F/vsms/q2

# ---- 7.2.12 / 7.2.13 on A: backup, changes, restore ----
chsm_use A
gmt_request PUT $F/chsm/ntp '{"servers":["127.0.0.1"],"enabled":false}'
expect "NTP of A" 0 200
task_ok "7.2.12 back up A" POST $F/chsm/backup '{}'
cp "$RESP_BODY" "$IT_DIR/backup.json"
BK_URL=$(resp_data .result.url) BK_SM3=$(resp_data .result.sm3)
check "7.2.12 result: imageId, url, sizeBytes, sm3, vsmIds" jqt "$IT_DIR/backup.json" \
  '.data.result | (.imageId | startswith("img-")) and .sizeBytes > 0 and .vsmIds == ["s2","src"]'
check "chsm-image inspect accepts the backup" "$CHSM_BIN/chsm-image" inspect "$(path_of "$BK_URL")"
# the backup never holds the device key, the domain key or the master key
check "the backup is not readable as the device key" eval '! grep -q "PRIVATE KEY" "$(path_of "$BK_URL")"'
gmt_request GET $F/chsm/status/all
jq -cS .data.config "$RESP_BODY" > "$IT_DIR/a-config.before"
SRC_A_BEFORE=$(status_of src)
gmt_request GET $F/vsms
jq -c '[.data.vsms[] | {vsmId, name, network, resources, keyCount}] | sort_by(.vsmId)' "$RESP_BODY" > "$IT_DIR/a-vsms.before"
# changes after the backup
check "src: another key after the backup" vsm_tool "$PS" src-app "$IT_DIR/src.b64" keygen --index 9
task_ok "delete s2 after the backup" DELETE $F/vsms/s2
gmt_request PUT $F/chsm/ntp '{"servers":["192.0.2.123"],"enabled":false}'
expect "NTP of A changed" 0 200
PN=$(free_port)
create_vsm newer "$PN"
task_fails "7.3.6 of a backup (not a VSM image)" 4003 POST $F/vsms/newer/image/import "{\"url\":\"$BK_URL\",\"sm3\":\"$BK_SM3\"}"
task_fails "7.2.9 of a backup (not a CHSM image)" 4003 POST $F/chsm/image/import "{\"url\":\"$BK_URL\",\"sm3\":\"$BK_SM3\"}"
task_fails "7.2.13 of a CHSM image (not a backup)" 4003 POST $F/chsm/restore "{\"url\":\"$CI_URL\",\"sm3\":\"$CI_SM3\"}"
task_fails "7.2.13 with a wrong sm3" 4008 POST $F/chsm/restore "{\"url\":\"$BK_URL\",\"sm3\":\"$IMG_SM3\"}"
check "a failed restore leaves src running" vsm_state_is src running
# the restore, with a chsmd that pauses 8 s in it (room for two signed
# requests on a loaded machine), to see other requests refused
chsm_stop
CHSM_TEST_IMPORT_DELAY_MS=8000 chsm_start
chsm_save A
eventually 15 vsm_state_is src running
MARK=$(wc -l < "$CHSMD_LOG")
gmt_request POST $F/chsm/restore "{\"url\":\"$BK_URL\",\"sm3\":\"$BK_SM3\"}"
expect "7.2.13 restore A's backup" 0 202
RS_TASK=$(resp_data .taskId)
restoring() { tail -n +"$((MARK + 1))" "$CHSMD_LOG" | grep -q 'event=test.import_delay.*phase=restoring'; }
check "the restore reaches its restoring phase" eventually 30 restoring
gmt_request POST $F/vsms/newer/start
expect "a request during the restore" 5003 503
gmt_request GET $F/chsm/status
check "7.2.2 during the restore: state restoring" [ "$(resp_data .state)" = restoring ]
wait_task "$RS_TASK"
check "the restore succeeded (${TASK_CODE:-?} $(resp_data .message))" [ "$TASK_STATE" = succeeded ]
gmt_request GET $F/chsm/status
check "7.2.2 after the restore: running" [ "$(resp_data .state)" = running ]
gmt_request GET $F/vsms
jq -c '[.data.vsms[] | {vsmId, name, network, resources, keyCount}] | sort_by(.vsmId)' "$RESP_BODY" > "$IT_DIR/a-vsms.after"
check "the VSMs are the backup's (s2 back, newer gone)" cmp -s "$IT_DIR/a-vsms.before" "$IT_DIR/a-vsms.after"
check "src's keys and token are the backup's" [ "$(status_of src)" = "$SRC_A_BEFORE" ]
check "src runs again (it was running at the backup)" eventually 10 vsm_state_is src running
check "s2 stays stopped" vsm_state_is s2 stopped
gmt_request GET $F/chsm/status/all
jq -cS .data.config "$RESP_BODY" > "$IT_DIR/a-config.after"
check "the configuration is the backup's (NTP, upload address, platform key)" cmp -s "$IT_DIR/a-config.before" "$IT_DIR/a-config.after"
check "src signs with key 1 after the restore, verified by openssl" eval '
  vsm_tool "$PS" src-app "$IT_DIR/src.b64" sign --index 1 --in "$IT_DIR/msg.bin" | base64 -d > "$IT_DIR/sig2.der" &&
  openssl dgst -sm3 -verify "$IT_DIR/src1.pub.pem" -sigopt distid:$DISTID -signature "$IT_DIR/sig2.der" "$IT_DIR/msg.bin"'
check "key 9, made after the backup, is gone" eval '! vsm_tool "$PS" src-app "$IT_DIR/src.b64" pubkey --index 9 >/dev/null 2>&1'
chsm_stop
chsm_start
chsm_save A

# ---- 7.2.13 of another device's backup (same domain) ----
chsm_use B
upload_to "$IT_DIR/up-B"
task_ok "7.2.12 back up B" POST $F/chsm/backup '{}'
B_URL=$(resp_data .result.url) B_SM3=$(resp_data .result.sm3)
gmt_request GET $F/vsms
jq -c '[.data.vsms[] | {vsmId, keyCount}] | sort_by(.vsmId)' "$RESP_BODY" > "$IT_DIR/b-vsms"
chsm_use A
task_fails "7.2.13 of B's backup on A" 1003 POST $F/chsm/restore "{\"url\":\"$B_URL\",\"sm3\":\"$B_SM3\"}"
check "A unchanged after the refused restore" [ "$(status_of src)" = "$SRC_A_BEFORE" ]
task_ok "7.2.13 of B's backup on A with allowOtherDevice" POST $F/chsm/restore "{\"url\":\"$B_URL\",\"sm3\":\"$B_SM3\",\"allowOtherDevice\":true}"
gmt_request GET $F/vsms
check "A now holds B's VSMs" eval '[ "$(jq -c "[.data.vsms[] | {vsmId, keyCount}] | sort_by(.vsmId)" "$RESP_BODY")" = "$(cat "$IT_DIR/b-vsms")" ]'
gmt_request GET $F/chsm
check "A keeps its own device identity and key" jqt "$RESP_BODY" \
  ".data.deviceId == \"$A_DEVICE_ID\" and .data.deviceKeyFingerprint == \"$A_DEVICE_FP\""
device_pub_pem
gmt_request GET $F/chsm/status
check "A's answers are still signed by A's device key" response_signature_ok "$LAST_NONCE"

# ---- no secret in any log ----
for n in A B C D; do
  check "chsmd $n: no token secret in its log" eval '! grep -qF "$(cat "$IT_DIR/src.b64")" "$IT_DIR/$n.log"'
done
it_end
