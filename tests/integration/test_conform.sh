#!/usr/bin/env bash
# chsm-conform (docs/conformance.md) against a real chsmd: every check passes
# with --image-dir, without and with --destructive; against a deliberately
# wrong responder (conform_wrong_responder.py) the broken check fails with its
# evidence and the exit status is 1 (a missing device signature, a wrong
# code, a secret echoed in an answer); usage errors exit 2.
#
# With CONFORM_RECORD=DIR the non-destructive run records every exchange
# there (test_openapi uses it).
source "$(dirname "$0")/lib.sh"
it_begin test_conform
HERE=$(cd "$(dirname "$0")" && pwd)
CONFORM=$CHSM_BIN/chsm-conform

# conform OUT ARGS...: runs the checker against the current CHSM, trusting it
# by $TRUST (default: the pinned device key fingerprint); sets RC.
conform() {
  local out=$1; shift
  local -a trust=(--device-fingerprint "$DEVICE_FP")
  [ -z "${TRUST:-}" ] || read -r -a trust <<<"$TRUST"
  RC=0
  "$CONFORM" --url "$BASE" --enrollment-code "$ENROLL_CODE" "${trust[@]}" \
    --task-timeout 60 "$@" > "$out" 2>&1 || RC=$?
}
# failed OUT: the checks that failed, with their evidence (for the log).
failed() { grep -A1 '^  FAIL' "$1" | head -n 40 | sed 's/^/#   /'; }

# ---- usage ----
RC=0; "$CONFORM" --url https://127.0.0.1:1 --enrollment-code X >/dev/null 2>&1 || RC=$?
check "nothing authenticates the device: exit 2" [ "$RC" = 2 ]
RC=0; "$CONFORM" --enrollment-code X --trust-on-first-use >/dev/null 2>&1 || RC=$?
check "no --url: exit 2" [ "$RC" = 2 ]
RC=0; "$CONFORM" --url https://127.0.0.1:1 --enrollment-code X --trust-on-first-use >/dev/null 2>&1 || RC=$?
check "device unreachable: exit 2" [ "$RC" = 2 ]

# ---- a conforming device, non-destructive, with --image-dir ----
openssl genpkey -algorithm SM2 -out "$IT_DIR/vendor.pem" 2>/dev/null || fail_now "vendor key"
openssl pkey -in "$IT_DIR/vendor.pem" -pubout -out "$IT_DIR/vendor.pub" 2>/dev/null
chsm_init --max-vsms 8 --vendor-key "$IT_DIR/vendor.pub"
chsm_start
mkdir -p "$IT_DIR/images"
rec=()
[ -z "${CONFORM_RECORD:-}" ] || rec=(--record "$CONFORM_RECORD")
conform "$IT_DIR/run1.txt" --image-dir "$IT_DIR/images" "${rec[@]}"
failed "$IT_DIR/run1.txt"
check "non-destructive run: exit 0" [ "$RC" = 0 ]
check "pinned device key" grep -q "^device key fingerprint: $DEVICE_FP (pinned)" "$IT_DIR/run1.txt"
check "non-destructive run: 0 failed" grep -q '^conformance: [0-9]* passed, 0 failed' "$IT_DIR/run1.txt"
check "non-destructive run: the image checks ran (not skipped)" \
  grep -q '^  pass  4002 import of an image re-signed by another key' "$IT_DIR/run1.txt"
check "non-destructive run: the destructive checks are reported skipped" \
  grep -q '^  skip  7.2.11 reboot CHSM' "$IT_DIR/run1.txt"
check "non-destructive run: says what it left changed" \
  grep -q '^left changed on the device: .*image upload address' "$IT_DIR/run1.txt"
conform "$IT_DIR/run1b.txt"
check "a second run on an enrolled device: exit 1" [ "$RC" = 1 ]
check "a second run on an enrolled device says why" \
  grep -q 'enrollment needs a device without a platform key' "$IT_DIR/run1b.txt"
# The run's platform key died with it: the administrator issues a new code,
# the test enrolls its own key and sees that no VSM was left behind.
chsm_stop
out=$("$CHSM_BIN/chsmd" admin reset-platform-key --state-dir "$STATE") || fail_now "admin reset"
ENROLL_CODE=$(printf '%s\n' "$out" | sed -n 's/^enrollment-code: //p')
chsm_start
enroll_platform
gmt_request GET /gmt0088/v1/vsms
check "no VSM left behind" jqt "$RESP_BODY" '.data.vsms == []'
chsm_stop

# ---- --destructive, on a fresh CHSM ----
STATE=$IT_DIR/state2 CHSMD_LOG=$IT_DIR/chsmd2.log
chsm_init --max-vsms 8 --vendor-key "$IT_DIR/vendor.pub"
chsm_start
mkdir -p "$IT_DIR/images2"
TRUST="--cacert $CACERT" conform "$IT_DIR/run2.txt" --image-dir "$IT_DIR/images2" --destructive \
  --vendor-key "$IT_DIR/vendor.pem"
failed "$IT_DIR/run2.txt"
check "--cacert: TLS verified against the device's certificate, its key printed" \
  grep -q "^device key fingerprint: $DEVICE_FP\$" "$IT_DIR/run2.txt"
# An interface chsmd still answers "not implemented" (5000; 7.3.11 while the
# VSM upgrade is being made real) fails its checks, and only those may.
other=$(grep -A1 '^  FAIL' "$IT_DIR/run2.txt" | grep -v '^--' | paste - - |
  grep -v 'not implemented in this release' || true)
if grep -q 'not implemented in this release' "$IT_DIR/run2.txt"; then
  echo "# known gap: chsmd answers an interface 'not implemented'; its checks fail as they must"
  check "destructive run: only the not-implemented interfaces fail" [ -z "$other" ]
  check "destructive run: exit 1 while they fail" [ "$RC" = 1 ]
else
  check "destructive run: exit 0" [ "$RC" = 0 ]
  check "destructive run: 0 failed" grep -q '^conformance: [0-9]* passed, 0 failed' "$IT_DIR/run2.txt"
fi
check "destructive run: backup and restore passed" \
  grep -q '^  pass  7.2.13 restore CHSM: task succeeds' "$IT_DIR/run2.txt"
# A device that is not the one trusted: nothing is checked (exit 2).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=other \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$IT_DIR/other.key" -out "$IT_DIR/other.pem" 2>/dev/null
TRUST="--cacert $IT_DIR/other.pem" conform "$IT_DIR/run-badca.txt"
check "--cacert of another CA: TLS refused, exit 2" [ "$RC" = 2 ]
TRUST="--device-fingerprint $(printf '%064d' 0)" conform "$IT_DIR/run-badfp.txt"
check "another pinned fingerprint: refused, exit 2" [ "$RC" = 2 ]
check "another pinned fingerprint: says so" grep -q 'is not the pinned' "$IT_DIR/run-badfp.txt"
chsm_stop

# ---- a wrong responder: the broken check fails with its evidence ----
for mode in unsigned wrongcode leak; do
  STATE=$IT_DIR/state-$mode CHSMD_LOG=$IT_DIR/chsmd-$mode.log
  chsm_init
  chsm_start
  python3 "$HERE/conform_wrong_responder.py" "$PORT" "$mode" "$IT_DIR/proxy-$mode.port" &
  IT_BG_PIDS="${IT_BG_PIDS:-} $!"
  eventually 10 test -s "$IT_DIR/proxy-$mode.port" || fail_now "wrong responder did not start"
  real_base=$BASE
  BASE=http://127.0.0.1:$(cat "$IT_DIR/proxy-$mode.port")
  # The leak is in 7.2.6, which the checker sets only with --image-dir.
  img=(); [ "$mode" != leak ] || { mkdir -p "$IT_DIR/images-$mode"; img=(--image-dir "$IT_DIR/images-$mode"); }
  TRUST=--trust-on-first-use conform "$IT_DIR/run-$mode.txt" "${img[@]}"
  BASE=$real_base
  check "$mode: trust on first use prints the device key" \
    grep -q "^device key fingerprint: $DEVICE_FP (trusted on first use" "$IT_DIR/run-$mode.txt"
  check "$mode: exit 1" [ "$RC" = 1 ]
  case $mode in
    unsigned)
      check "unsigned: 7.2.2 fails" grep -q '^  FAIL  7.2.2 CHSM running status: fields' "$IT_DIR/run-$mode.txt"
      check "unsigned: the evidence names the request and the missing signature" \
        grep -q 'request: GET /gmt0088/v1/chsm/status | expected: code 0, HTTP 200, a signed envelope | got: HTTP 200, .*X-GMT-Device-Signature present 0 times' "$IT_DIR/run-$mode.txt"
      check "unsigned: nothing else fails" \
        [ "$(grep -c '^  FAIL' "$IT_DIR/run-$mode.txt")" = "$(grep -c '^  FAIL  7.2.2' "$IT_DIR/run-$mode.txt")" ] ;;
    wrongcode)
      check "wrongcode: 1004 fails" grep -q '^  FAIL  1004 unknown path' "$IT_DIR/run-$mode.txt"
      check "wrongcode: the evidence shows the code received" \
        grep -q 'expected: code 1004, HTTP 404, a signed envelope | got: HTTP 404, body {"code":1003' "$IT_DIR/run-$mode.txt" ;;
    leak)
      check "leak: the secret in an answer fails §6" \
        grep -q '^  FAIL  no answer carries a secret the checker sent' "$IT_DIR/run-$mode.txt"
      check "leak: the evidence names the request" \
        grep -q 'request: PUT /gmt0088/v1/chsm/image-upload-address .* | got a body holding secret' "$IT_DIR/run-$mode.txt" ;;
  esac
  failed "$IT_DIR/run-$mode.txt"
  chsm_stop
done
it_end
