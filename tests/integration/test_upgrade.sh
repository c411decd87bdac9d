#!/usr/bin/env bash
# CHSM upgrade (PROFILE.md 7.2.10, §10): a vendor-signed package of
# component chsm at a strictly newer version is installed beside the
# running version, the launcher (`chsmd run`, whose pid stays) switches to
# it, and the task ends in the new process with previousVersion/version.
# Every refused package changes nothing (4001, 4003, 4005, 4006, 4008). A
# new version that exits, hangs past --health-timeout-ms, or whose trial
# the launcher did not survive, is rolled back: the task fails (5000) in
# the previous version, which serves on. The good package holds
# tests/upgrade's chsmd-next and chsm-vsmd-next (the project's programs
# reporting the next patch version).
. "$(dirname "$0")/lib.sh"
: "${CHSM_NEXT_BIN:?CHSM_NEXT_BIN must name the folder with chsmd-next and chsm-vsmd-next}"
it_begin upgrade
API=/gmt0088/v1
CUR=$("$CHSM_BIN/chsmd" version | cut -d' ' -f2)
NEXT=$("$CHSM_NEXT_BIN/chsmd-next" version | cut -d' ' -f2)
check "chsmd-next ($NEXT) is newer than chsmd ($CUR)" [ "$NEXT" != "$CUR" ]

sm2_keygen vendor >/dev/null
sm2_keygen other >/dev/null
PKGS=$IT_DIR/pkgs
mkdir -p "$PKGS/next" "$PKGS/exit1" "$PKGS/hang"
cp "$CHSM_NEXT_BIN/chsmd-next" "$PKGS/next/chsmd"
cp "$CHSM_NEXT_BIN/chsm-vsmd-next" "$PKGS/next/chsm-vsmd"
printf '#!/bin/sh\nexit 1\n' > "$PKGS/exit1/chsmd"
printf '#!/bin/sh\nexec sleep 600\n' > "$PKGS/hang/chsmd"
chmod 755 "$PKGS/exit1/chsmd" "$PKGS/hang/chsmd"
# pkg NAME COMPONENT VERSION KEY FILES...: $PKGS/NAME.pkg.
pkg() {
  local name=$1 comp=$2 ver=$3 key=$4; shift 4
  "$CHSM_BIN/chsm-pkg" build --component "$comp" --version "$ver" --key "$IT_DIR/$key.pem" "$@" \
    -o "$PKGS/$name.pkg" >/dev/null || fail_now "chsm-pkg build $name"
}
pkg good chsm "$NEXT" vendor "$PKGS/next/chsmd" "$PKGS/next/chsm-vsmd"
pkg vsm vsm "$NEXT" vendor "$PKGS/next/chsm-vsmd"
pkg other chsm "$NEXT" other "$PKGS/next/chsmd" "$PKGS/next/chsm-vsmd"
pkg same chsm "$CUR" vendor "$PKGS/next/chsmd"
pkg nochsmd chsm 97.0.0 vendor "$PKGS/next/chsm-vsmd"
pkg exit1 chsm 98.0.0 vendor "$PKGS/exit1/chsmd"
pkg hang chsm 98.0.1 vendor "$PKGS/hang/chsmd"
pkg hang2 chsm 98.0.2 vendor "$PKGS/hang/chsmd"
head -c 4000 /dev/urandom > "$PKGS/junk.pkg"

chsm_init --vendor-key "$IT_DIR/vendor.pub.pem"
chsm_start
device_pub_pem
enroll_platform
LAUNCHER=$CHSMD_PID

P1=$(free_port)
head -c 24 /dev/urandom | base64 -w0 > "$IT_DIR/tok.b64"
task_ok "create u1 (started) with a token" POST $API/vsms "{\"vsmId\":\"u1\",\"name\":\"tenant\",
  \"network\":$(vsm_net 127.0.0.1 "$P1"),\"token\":{\"tokenId\":\"app\",\"secret\":\"$(cat "$IT_DIR/tok.b64")\"},\"start\":true}"
check "u1: a signing key (vsmtool)" vsm_tool "$P1" app "$IT_DIR/tok.b64" keygen --index 1
vsm_tool "$P1" app "$IT_DIR/tok.b64" pubkey --index 1 > "$IT_DIR/k.pem"
head -c 3000 /dev/urandom > "$IT_DIR/doc"
# u1_signs: u1's key signs, and openssl verifies with the public key from the start.
u1_signs() {
  vsm_tool "$P1" app "$IT_DIR/tok.b64" sign --index 1 --in "$IT_DIR/doc" > "$IT_DIR/sig.b64" &&
    base64 -d < "$IT_DIR/sig.b64" > "$IT_DIR/sig.der" &&
    openssl dgst -sm3 -verify "$IT_DIR/k.pem" -sigopt distid:$DISTID -signature "$IT_DIR/sig.der" \
      "$IT_DIR/doc" | grep -q "Verified OK"
}
firmware() { gmt_request GET $API/chsm; resp_data .firmwareVersion; }
check "firmwareVersion is $CUR" [ "$(firmware)" = "$CUR" ]

# upgrade_task DESCRIPTION URL SM3 CODE: an accepted upgrade whose task ends with CODE.
upgrade_task() {
  gmt_request POST $API/chsm/upgrade "{\"url\":\"$2\",\"sm3\":\"$3\"}"
  expect "$1: accepted" 0 202
  TASK_ID=$(resp_data .taskId)
  wait_task "$TASK_ID"
  check "$1: task ends ${4} (got $TASK_STATE $TASK_CODE: $(resp_data .message))" [ "$TASK_CODE" = "$4" ]
}
file_url() { printf 'file://%s' "$PKGS/$1"; }

# ---- refused packages change nothing ----
VSM_PID=$(vsm_pid u1)
SERVICE=$(service_pid)
refused() {
  upgrade_task "$1" "$(file_url "$2")" "${3:-$(sm3_hex "$PKGS/$2")}" "$4"
}
refused "a vsm component package" vsm.pkg "" 4006
refused "a package signed by another key" other.pkg "" 4001
refused "a package of the running version" same.pkg "" 4006
refused "a package without chsmd" nochsmd.pkg "" 4006
refused "the wrong sm3" good.pkg "$(sm3_hex "$PKGS/junk.pkg")" 4008
refused "not a package" junk.pkg "" 4003
upgrade_task "an unreachable url" "http://127.0.0.1:$(free_port)/good.pkg" "$(sm3_hex "$PKGS/good.pkg")" 4005
check "after the refusals: firmwareVersion is still $CUR" [ "$(firmware)" = "$CUR" ]
check "... the same service process" [ "$(service_pid)" = "$SERVICE" ]
check "... u1 runs in the same process" [ "$(vsm_pid u1)" = "$VSM_PID" ]
check "... nothing was installed or switched" eval '[ ! -e "$STATE/boot/current" ] && [ ! -e "$STATE/versions/$NEXT" ]'
gmt_request GET $API/chsm/status
check "... the CHSM runs" [ "$(resp_data .state)" = running ]

# rolled_back DESCRIPTION VERSION: the last task failed 5000 for VERSION and
# the previous version serves, with u1.
rolled_back() {
  check "$1: the task failed 5000 (got $TASK_STATE $TASK_CODE)" [ "$TASK_STATE" = failed ] && [ "$TASK_CODE" = 5000 ]
  check "$1: ... saying why" jqt "$RESP_BODY" \
    ".data.result.attemptedVersion == \"$2\" and .data.result.version == \"$CUR\" and (.data.message | test(\"did not come up healthy\"))"
  check "$1: firmwareVersion is still $CUR" [ "$(firmware)" = "$CUR" ]
  check "$1: no trial left, no version switched" eval '[ ! -e "$STATE/boot/trial" ] && [ ! -e "$STATE/boot/current" ]'
  check "$1: the launcher is the same process" kill -0 "$LAUNCHER"
  check "$1: u1 runs again" vsm_state_is u1 running
  check "$1: u1's key signs" u1_signs
}

# ---- a new version that exits at once ----
upgrade_task "a chsmd that exits 1" "$(file_url exit1.pkg)" "$(sm3_hex "$PKGS/exit1.pkg")" 5000
rolled_back "exit 1" 98.0.0
check "the launcher logged the rollback" grep -q 'event=upgrade.rolled_back attempted=98.0.0' "$CHSMD_LOG"

# ---- a new version that never reports ready ----
check "restart with --health-timeout-ms 3000" chsm_stop
chsm_start --health-timeout-ms 3000
LAUNCHER=$CHSMD_PID
upgrade_task "a chsmd that hangs" "$(file_url hang.pkg)" "$(sm3_hex "$PKGS/hang.pkg")" 5000
rolled_back "hang" 98.0.1
check "the launcher logged the deadline" grep -q 'attempted=98.0.1 .*reason="not ready within 3000 ms"' "$CHSMD_LOG"

# ---- the launcher killed during a trial: its next start rolls back ----
check "restart with the default health timeout" chsm_stop
chsm_start
gmt_request POST $API/chsm/upgrade "{\"url\":\"$(file_url hang2.pkg)\",\"sm3\":\"$(sm3_hex "$PKGS/hang2.pkg")\"}"
expect "a chsmd that hangs, again: accepted" 0 202
TASK_ID=$(resp_data .taskId)
# The program on trial is the launcher's child (its script became sleep).
in_trial() { grep -q 'next 98.0.2' "$STATE/boot/trial" 2>/dev/null && pgrep -P "$CHSMD_PID" -x sleep >/dev/null; }
check "the trial of 98.0.2 runs" eventually 50 in_trial
HANGING=$(pgrep -P "$CHSMD_PID" -x sleep | head -n 1)
chsm_kill
check "the program on trial died with its launcher" eventually 10 proc_gone "$HANGING"
chsm_start
LAUNCHER=$CHSMD_PID
wait_task "$TASK_ID"
rolled_back "launcher killed" 98.0.2
check "the new launcher logged the rollback" grep -q 'attempted=98.0.2 .*reason="the launcher stopped during the trial"' "$CHSMD_LOG"

# ---- the real upgrade ----
VSM_PID=$(vsm_pid u1)
SERVICE=$(service_pid)
mkdir -p "$IT_DIR/cb"
receiver_start "$IT_DIR/cb"
gmt_request POST $API/chsm/upgrade "{\"url\":\"$(file_url good.pkg)\",\"sm3\":\"$(sm3_hex "$PKGS/good.pkg")\",\"callbackUrl\":\"http://127.0.0.1:$RCV_PORT/cb\"}"
expect "upgrade to $NEXT: accepted" 0 202
TASK_ID=$(resp_data .taskId)
check "... as chsm.upgrade" [ "$(resp_data .operation)" = chsm.upgrade ]
wait_task "$TASK_ID"
check "upgrade: the task succeeded (got $TASK_STATE $TASK_CODE)" [ "$TASK_STATE" = succeeded ]
check "... with previousVersion $CUR and version $NEXT" jqt "$RESP_BODY" \
  ".data.result == {\"previousVersion\":\"$CUR\",\"version\":\"$NEXT\"}"
check "firmwareVersion is $NEXT" [ "$(firmware)" = "$NEXT" ]
check "the launcher is the same process" [ "$CHSMD_PID" = "$LAUNCHER" ] && kill -0 "$LAUNCHER"
check "the service is a new process" eval '[ -n "$(service_pid)" ] && [ "$(service_pid)" != "$SERVICE" ]'
check "... running the installed version" eval 'grep -q "$STATE/versions/$NEXT/chsmd" "/proc/$(service_pid)/cmdline"'
check "boot/current names $NEXT, no trial left" eval '[ "$(cat "$STATE/boot/current")" = "$NEXT" ] && [ ! -e "$STATE/boot/trial" ]'
check "u1 runs again" vsm_state_is u1 running
check "... in a new process" eval '[ -n "$(vsm_pid u1)" ] && [ "$(vsm_pid u1)" != "$VSM_PID" ]'
check "... of the package's chsm-vsmd" eval 'grep -q "$STATE/versions/$NEXT/chsm-vsmd" "/proc/$(vsm_pid u1)/cmdline"'
check "u1's key signs after the upgrade" u1_signs
cb_done() { [ -n "$(records "$IT_DIR/cb" "$TASK_ID")" ]; }
check "the callback arrived" eventually 30 cb_done
R=$IT_DIR/cb/$(records "$IT_DIR/cb" "$TASK_ID" | head -n 1)
check "... saying succeeded with the versions" jqt "$R.body" \
  ".state == \"succeeded\" and .operation == \"chsm.upgrade\" and .result.version == \"$NEXT\""
check "... signed with the device key" callback_signature_ok "$R"
receiver_stop
check "the launcher logged the commit" grep -q "event=upgrade.committed previous=launcher version=$NEXT" "$CHSMD_LOG"

# ---- no going back by a replayed package ----
upgrade_task "the same package again" "$(file_url good.pkg)" "$(sm3_hex "$PKGS/good.pkg")" 4006
check "firmwareVersion is still $NEXT" [ "$(firmware)" = "$NEXT" ]
# A restart keeps the installed version.
check "SIGTERM stops the launcher and its service cleanly" chsm_stop
chsm_start
check "after a restart, firmwareVersion is still $NEXT" [ "$(firmware)" = "$NEXT" ]
check "u1 runs" vsm_state_is u1 running
it_end
