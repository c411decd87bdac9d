#!/usr/bin/env bash
# VSM upgrade (7.3.11, docs/operations.md "VSM upgrade"): a running VSM
# with keys is upgraded by a vendor-signed vsm package to the next version
# (bin-next/chsm-vsmd-next, the project's chsm-vsmd reporting the next
# patch version): the task succeeds and calls back, 7.3.1 reports the new
# version, the process runs the program under <state>/vsm-versions, its
# keys still sign (openssl verifies against the public key exported
# before), stateDigest and stateVersion are unchanged. A stopped VSM stays
# stopped and starts later on the new version. Every refusal leaves the VSM
# exactly as it was; a new program that does not start rolls back to the
# old one; an image of the upgraded VSM imports into a VSM of the old
# version; a chsmd killed during an upgrade leaves the old version; after a
# restart each VSM runs its recorded version.
#
# Environment (CTest): CHSM_BIN, CHSM_BIN_NEXT (bin-next folder).
. "$(dirname "$0")/lib.sh"
: "${CHSM_BIN_NEXT:?CHSM_BIN_NEXT must name the folder with chsm-vsmd-next}"
it_begin vsm_upgrade
API=/gmt0088/v1
W=$IT_DIR/pkgs
mkdir -p "$W/next" "$W/cur" "$W/bad1" "$W/slow" "$W/liar"

CUR=$("$CHSM_BIN/chsm-vsmd" --version) || fail_now "chsm-vsmd --version"
NEXT=$("$CHSM_BIN_NEXT/chsm-vsmd-next" --version) || fail_now "chsm-vsmd-next --version"
IFS=. read -r MA MI PA <<<"$CUR"
check "chsm-vsmd --version is MAJOR.MINOR.PATCH, the next is newer" \
  [ "$NEXT" = "$MA.$MI.$((PA + 1))" ]
V_BAD1=$MA.$MI.$((PA + 2)); V_SLOW=$MA.$MI.$((PA + 3)); V_LIAR=$MA.$MI.$((PA + 4))
V_OLDER=$MA.$MI.$((PA > 0 ? PA - 1 : 0)); [ "$PA" -gt 0 ] || V_OLDER=0.0.0

sm2_keygen vendor >/dev/null
sm2_keygen other >/dev/null
chsm_init --vendor-key "$IT_DIR/vendor.pub.pem"
chsm_start
device_pub_pem
enroll_platform

# ---- packages ----
cp "$CHSM_BIN_NEXT/chsm-vsmd-next" "$W/next/chsm-vsmd"
cp "$CHSM_BIN/chsm-vsmd" "$W/cur/chsm-vsmd"
# A program that answers --version but cannot serve: exits at once...
printf '#!/bin/sh\n[ "$1" = --version ] && { echo %s; exit 0; }\nexit 1\n' "$V_BAD1" > "$W/bad1/chsm-vsmd"
# ... or never says READY (the supervisor gives up after its timeout).
printf '#!/bin/sh\n[ "$1" = --version ] && { echo %s; exit 0; }\nexec sleep 60\n' "$V_SLOW" > "$W/slow/chsm-vsmd"
chmod 0755 "$W/bad1/chsm-vsmd" "$W/slow/chsm-vsmd"
# pkg NAME COMPONENT VERSION KEY FILE: builds $W/NAME.pkg.
pkg() {
  "$CHSM_BIN/chsm-pkg" build --component "$2" --version "$3" --key "$IT_DIR/$4.pem" "$5" \
    -o "$W/$1.pkg" >/dev/null || fail_now "chsm-pkg build $1"
}
pkg good vsm "$NEXT" vendor "$W/next/chsm-vsmd"
pkg same vsm "$CUR" vendor "$W/cur/chsm-vsmd"
pkg older vsm "$V_OLDER" vendor "$W/cur/chsm-vsmd"
pkg chsm chsm "$V_LIAR" vendor "$W/next/chsm-vsmd"
pkg other vsm "$NEXT" other "$W/next/chsm-vsmd"
pkg liar vsm "$V_LIAR" vendor "$W/next/chsm-vsmd"     # says it is $NEXT
pkg bad1 vsm "$V_BAD1" vendor "$W/bad1/chsm-vsmd"
pkg slow vsm "$V_SLOW" vendor "$W/slow/chsm-vsmd"
printf 'readme\n' > "$W/readme.txt"
pkg noprog vsm "$V_LIAR" vendor "$W/readme.txt"
head -c 4096 /dev/urandom > "$W/junk.pkg"

# upgrade_body NAME [SM3]: the 7.3.11 body for $W/NAME.pkg.
upgrade_body() {
  printf '{"url":"file://%s","sm3":"%s"}' "$W/$1.pkg" "${2:-$(sm3_hex "$W/$1.pkg")}"
}
# snapshot ID: what must not change: state, version, stateVersion,
# stateDigest, keyCount and the process.
snapshot() {
  gmt_request GET "$API/vsms/$1"
  local a; a=$(jq -r '.data | "\(.state) \(.version) \(.stateVersion) \(.keyCount)"' "$RESP_BODY")
  gmt_request GET "$API/vsms/$1/status"
  echo "$a $(resp_data .stateDigest) pid=$(vsm_pid "$1")"
}
# refused DESC ID NAME CODE [SM3]: the upgrade task fails with CODE and the
# VSM is exactly as before.
refused() {
  local before; before=$(snapshot "$2")
  gmt_request POST "$API/vsms/$2/upgrade" "$(upgrade_body "$3" "${5:-}")"
  expect "$1: accepted" 0 202
  wait_task "$(resp_data .taskId)"
  check "$1: task failed with $4 (got ${TASK_STATE:-?} ${TASK_CODE:-?}: $(resp_data .message))" \
    [ "${TASK_STATE:-} ${TASK_CODE:-}" = "failed $4" ]
  local after; after=$(snapshot "$2")
  check "$1: VSM unchanged ($after)" [ "$before" = "$after" ]
}
# exe_of ID: the program VSM ID's process runs, from its command line:
# argv[0] (the supervisor's path), or under Valgrind, whose launcher and
# tool (/proc/PID/exe) run in its place, the first argument after
# valgrind's options. Symlinks resolved.
exe_of() {
  local pid; pid=$(vsm_pid "$1")
  [ -n "$pid" ] || return 1
  local -a argv; mapfile -d '' argv < "/proc/$pid/cmdline" || return 1
  local i=0
  case ${argv[0]##*/} in
    valgrind|valgrind.bin|memcheck-*)
      i=1; while [ "$i" -lt "${#argv[@]}" ] && [[ ${argv[$i]} == -* ]]; do i=$((i + 1)); done ;;
  esac
  [ "$i" -lt "${#argv[@]}" ] && readlink -f "${argv[$i]}"
}
# signs_as_up1 PORT: the VSM there signs $IT_DIR/doc with key 1 (token
# "app") and openssl verifies it against up1's public key read at the start.
signs_as_up1() {
  vsm_tool "$1" app "$IT_DIR/token.b64" sign --index 1 --in "$IT_DIR/doc" | base64 -d > "$IT_DIR/sig.der" &&
    openssl dgst -sm3 -verify "$IT_DIR/pub1.pem" -sigopt distid:$DISTID -signature "$IT_DIR/sig.der" \
      "$IT_DIR/doc" >/dev/null
}

# ---- a running VSM with keys ----
P1=$(free_port)
openssl rand -base64 32 > "$IT_DIR/token.b64"
TOKEN="{\"tokenId\":\"app\",\"secret\":\"$(tr -d '\n' < "$IT_DIR/token.b64")\"}"
task_ok "create up1 (running, token)" POST $API/vsms \
  "{\"vsmId\":\"up1\",\"name\":\"u1\",\"network\":$(vsm_net 127.0.0.1 "$P1"),\"token\":$TOKEN,\"start\":true}"
check "up1 listens" eventually 10 listening 127.0.0.1 "$P1"
T() { vsm_tool "$P1" app "$IT_DIR/token.b64" "$@"; }
check "keygen sign key 1" T keygen --index 1
check "kek-gen 2" T kek-gen --index 2
T pubkey --index 1 > "$IT_DIR/pub1.pem" || fail_now "pubkey"
head -c 5000 /dev/urandom > "$IT_DIR/doc"
# devver MAJOR.MINOR.PATCH: DEVICE_INFO's device_version as vsmtool prints it.
devver() { local a b c; IFS=. read -r a b c <<<"$1"; printf 'device_version: 0x%08X' $((a << 16 | b << 8 | c)); }
check "the tenant sees version $CUR (DEVICE_INFO)" eval 'T info | grep -qx "$(devver "$CUR")"'
check "up1 runs the default chsm-vsmd" [ "$(exe_of up1)" = "$(readlink -f "$CHSM_BIN/chsm-vsmd")" ]
gmt_request GET "$API/vsms/up1"
check "up1's version is chsm-vsmd's ($CUR)" [ "$(resp_data .version)" = "$CUR" ]
SV1=$(resp_data .stateVersion)
gmt_request GET "$API/vsms/up1/status"
DIGEST1=$(resp_data .stateDigest)

# ---- refusals, each leaving up1 as it was (it keeps serving) ----
refused "the same version" up1 same 4006
refused "an older version" up1 older 4006
refused "a chsm package" up1 chsm 4006
refused "another signer" up1 other 4001
refused "wrong sm3" up1 good 4008 "$(printf '0%.0s' $(seq 64))"
refused "not a package" up1 junk 4003
refused "a program reporting another version" up1 liar 4006
refused "no chsm-vsmd in the package" up1 noprog 4006
before=$(snapshot up1)
gmt_request POST "$API/vsms/up1/upgrade" '{"url":"file:///nonexistent/x.pkg","sm3":"'"$(sm3_hex "$W/good.pkg")"'"}'
wait_task "$(resp_data .taskId)"
check "a bad url: task failed with 4005 (got ${TASK_CODE:-?})" [ "${TASK_CODE:-}" = 4005 ]
check "a bad url: VSM unchanged" [ "$(snapshot up1)" = "$before" ]
check "the refused versions were not installed" \
  eval '[ ! -e "$STATE/vsm-versions/$V_LIAR" ] && [ ! -e "$STATE/vsm-versions/$CUR" ]'
check "up1 still signs, verifiably" signs_as_up1 "$P1"
gmt_request POST "$API/vsms/nope/upgrade" "$(upgrade_body good)"
expect "unknown VSM" 3001 404

# ---- a new program that does not start: back on the old version ----
before=$(snapshot up1)
gmt_request POST "$API/vsms/up1/upgrade" "$(upgrade_body bad1)"
wait_task "$(resp_data .taskId)"
check "exits at start: task failed 5000 (got ${TASK_STATE:-?} ${TASK_CODE:-?})" \
  [ "${TASK_STATE:-} ${TASK_CODE:-}" = "failed 5000" ]
check "exits at start: result names both versions" \
  jqt "$RESP_BODY" ".data.result == {\"previousVersion\":\"$CUR\",\"version\":\"$CUR\",\"attemptedVersion\":\"$V_BAD1\"}"
after=$(snapshot up1)
check "exits at start: up1 runs its old version, keys intact" \
  eval '[ "${after% pid=*}" = "${before% pid=*}" ] && [ -n "$(vsm_pid up1)" ]'
check "exits at start: up1 runs the default program" [ "$(exe_of up1)" = "$(readlink -f "$CHSM_BIN/chsm-vsmd")" ]
check "exits at start: up1 signs, verifiably" signs_as_up1 "$P1"

# The second upgrade goes right after the first is accepted (its body made
# before): the first task ends by itself once the supervisor stops waiting
# for READY (5 s; 50 s under Valgrind), and a request admitted after that is
# rightly accepted. Admission itself is one transaction under the store's
# lock (api_submit_task), so no two upgrades of one VSM are ever admitted.
good_body=$(upgrade_body good)
gmt_request POST "$API/vsms/up1/upgrade" "$(upgrade_body slow)"
expect "never ready: accepted" 0 202
SLOW_TASK=$(resp_data .taskId)
gmt_request POST "$API/vsms/up1/upgrade" "$good_body"
expect "a second upgrade while one runs" 3005 409
check "never ready: up1 is upgrading" vsm_state_is up1 upgrading
wait_task "$SLOW_TASK"
check "never ready: task failed 5000 (got ${TASK_STATE:-?} ${TASK_CODE:-?})" \
  [ "${TASK_STATE:-} ${TASK_CODE:-}" = "failed 5000" ]
check "never ready: up1 running on $CUR" [ "$(snapshot up1 | cut -d' ' -f1,2)" = "running $CUR" ]
check "never ready: up1 signs, verifiably" signs_as_up1 "$P1"

# ---- the upgrade, with a callback ----
mkdir -p "$IT_DIR/cb"
python3 "$(dirname "$0")/callback_receiver.py" --dir "$IT_DIR/cb" > "$IT_DIR/cb.port" 2>"$IT_DIR/cb.err" &
IT_BG_PIDS="${IT_BG_PIDS:-} $!"
eventually 30 test -s "$IT_DIR/cb.port" || fail_now "callback receiver did not start: $(head -c 300 "$IT_DIR/cb.err")"
CB="http://127.0.0.1:$(head -n 1 "$IT_DIR/cb.port")/cb"
OLD_PID=$(vsm_pid up1)
gmt_request POST "$API/vsms/up1/upgrade" "{\"url\":\"file://$W/good.pkg\",\"sm3\":\"$(sm3_hex "$W/good.pkg")\",\"callbackUrl\":\"$CB\"}"
expect "upgrade up1 to $NEXT: accepted" 0 202
UP_TASK=$(resp_data .taskId)
wait_task "$UP_TASK"
check "upgrade: task succeeded (got ${TASK_STATE:-?} ${TASK_CODE:-?} $(resp_data .message))" [ "${TASK_STATE:-}" = succeeded ]
check "upgrade: result {previousVersion, version}" \
  jqt "$RESP_BODY" ".data.result == {\"previousVersion\":\"$CUR\",\"version\":\"$NEXT\"}"
cb_arrived() { grep -l "\"taskId\":\"$UP_TASK\"" "$IT_DIR"/cb/*.body 2>/dev/null | head -n 1 | grep -q .; }
check "upgrade: the callback arrived" eventually 15 cb_arrived
CBF=$(grep -l "\"taskId\":\"$UP_TASK\"" "$IT_DIR"/cb/*.body 2>/dev/null | head -n 1)
check "upgrade: the callback says succeeded with the versions" \
  jqt "${CBF:-/dev/null}" ".state == \"succeeded\" and .result.version == \"$NEXT\""
gmt_request GET "$API/vsms/up1"
check "7.3.1: version $NEXT, running" [ "$(resp_data .version) $(resp_data .state)" = "$NEXT running" ]
check "stateVersion unchanged" [ "$(resp_data .stateVersion)" = "$SV1" ]
gmt_request GET "$API/vsms/up1/status"
check "stateDigest unchanged" [ "$(resp_data .stateDigest)" = "$DIGEST1" ]
check "a new process" eval '[ -n "$(vsm_pid up1)" ] && [ "$(vsm_pid up1)" != "$OLD_PID" ]'
check "it runs $STATE/vsm-versions/$NEXT/chsm-vsmd" [ "$(exe_of up1)" = "$STATE/vsm-versions/$NEXT/chsm-vsmd" ]
check "the installed program is the packaged one" cmp -s "$STATE/vsm-versions/$NEXT/chsm-vsmd" "$W/next/chsm-vsmd"
check "the tenant sees version $NEXT (DEVICE_INFO)" eval 'T info | grep -qx "$(devver "$NEXT")"'
check "on the new version key 1 signs; openssl verifies with the public key exported before" \
  signs_as_up1 "$P1"
refused "the same version again" up1 good 4006

# ---- a stopped VSM: upgraded, stays stopped, starts on the new version ----
P2=$(free_port)
task_ok "create up2 (stopped)" POST $API/vsms "{\"vsmId\":\"up2\",\"name\":\"u2\",\"network\":$(vsm_net 127.0.0.1 "$P2")}"
task_ok "upgrade up2" POST "$API/vsms/up2/upgrade" "$(upgrade_body good)"
check "up2: result" jqt "$RESP_BODY" ".data.result == {\"previousVersion\":\"$CUR\",\"version\":\"$NEXT\"}"
gmt_request GET "$API/vsms/up2"
check "up2: stopped on $NEXT" [ "$(resp_data .state) $(resp_data .version)" = "stopped $NEXT" ]
check "up2: no process" [ -z "$(vsm_pid up2)" ]
task_ok "start up2" POST "$API/vsms/up2/start" '{}'
check "up2 runs the shared $NEXT program" [ "$(exe_of up2)" = "$STATE/vsm-versions/$NEXT/chsm-vsmd" ]

# ---- drift between versions: up1's image (on $NEXT) into a VSM on $CUR ----
mkdir -p "$IT_DIR/images"
gmt_request PUT $API/chsm/image-upload-address "{\"url\":\"file://$IT_DIR/images/\"}"
expect "image upload address" 0 200
task_ok "export up1's image" POST "$API/vsms/up1/image/export" '{}'
IMG_URL=$(resp_data .result.url) IMG_SM3=$(resp_data .result.sm3)
P4=$(free_port)
task_ok "create up4 (stopped, on $CUR)" POST $API/vsms "{\"vsmId\":\"up4\",\"name\":\"u4\",\"network\":$(vsm_net 127.0.0.1 "$P4")}"
task_ok "import up1's image into up4" POST "$API/vsms/up4/image/import" "{\"url\":\"$IMG_URL\",\"sm3\":\"$IMG_SM3\"}"
task_ok "start up4" POST "$API/vsms/up4/start" '{}'
gmt_request GET "$API/vsms/up4"
check "up4 keeps its version $CUR" [ "$(resp_data .version)" = "$CUR" ]
gmt_request GET "$API/vsms/up4/status"
check "up4 holds up1's keys and token (same stateDigest)" [ "$(resp_data .stateDigest)" = "$DIGEST1" ]
check "up4 (on $CUR) signs with up1's key" signs_as_up1 "$P4"
task_ok "delete up4" DELETE "$API/vsms/up4"

# ---- a state that does not allow it ----
P3=$(free_port)
task_ok "create up3 (running)" POST $API/vsms "{\"vsmId\":\"up3\",\"name\":\"u3\",\"network\":$(vsm_net 127.0.0.1 "$P3"),\"start\":true}"
kill -KILL "$(vsm_pid up3)"
check "up3 goes to fault" eventually 10 vsm_state_is up3 fault
gmt_request POST "$API/vsms/up3/upgrade" "$(upgrade_body good)"
expect "upgrade of a VSM in fault" 3003 409

# ---- chsmd killed during an upgrade: the old version, running again ----
before=$(snapshot up3 | cut -d' ' -f2-5)
task_ok "start up3 again" POST "$API/vsms/up3/start" '{}'
gmt_request POST "$API/vsms/up3/upgrade" "$(upgrade_body slow)"
expect "up3: upgrade accepted" 0 202
CRASH_TASK=$(resp_data .taskId)
check "up3 is upgrading, its new program starting" \
  eventually 5 eval 'vsm_state_is up3 upgrading && pgrep -P "$(service_pid)" -x sleep >/dev/null'
chsm_kill
chsm_start
gmt_request GET "$API/tasks/$CRASH_TASK"
check "after the crash: the task failed" [ "$(resp_data .state)" = failed ]
check "after the crash: up3 running on $CUR" eventually 10 eval '[ "$(snapshot up3 | cut -d" " -f1,2)" = "running $CUR" ]'
check "after the crash: up3 as before" [ "$(snapshot up3 | cut -d' ' -f2-5)" = "$before" ]

# ---- restart: each VSM on its recorded version ----
chsm_stop
chsm_start
check "after a restart: up1 running" eventually 10 vsm_state_is up1 running
check "after a restart: up1 on $NEXT's program" [ "$(exe_of up1)" = "$STATE/vsm-versions/$NEXT/chsm-vsmd" ]
check "after a restart: up2 on $NEXT's program" eventually 10 eval '[ "$(exe_of up2)" = "$STATE/vsm-versions/$NEXT/chsm-vsmd" ]'
check "after a restart: up3 on the default program" [ "$(exe_of up3)" = "$(readlink -f "$CHSM_BIN/chsm-vsmd")" ]
check "after a restart: up1 signs, verifiably" signs_as_up1 "$P1"
gmt_request GET "$API/vsms/up1/status"
check "after a restart: up1's stateDigest unchanged" [ "$(resp_data .stateDigest)" = "$DIGEST1" ]

# ---- a version folder gone: the VSM runs the default, recorded (logged) ----
chsm_stop
rm -rf "$STATE/vsm-versions/$NEXT"
chsm_start
gmt_request GET "$API/vsms/up2"
check "without its version's folder up2 is recorded on $CUR" [ "$(resp_data .version)" = "$CUR" ]
check "the change is logged" grep -q "event=vsm.version .*vsm=up2" "$CHSMD_LOG"
check "up1 runs the default program" eventually 10 eval '[ "$(exe_of up1)" = "$(readlink -f "$CHSM_BIN/chsm-vsmd")" ]'
check "up1 still signs, verifiably" signs_as_up1 "$P1"
it_end
