#!/usr/bin/env bash
# Authentication (PROFILE.md §4, §5), with requests signed and MACed by the
# openssl CLI: the enrollment code (wrong codes, lockout, the administrator's
# reset, one use only); every §5 failure with its code, and the order of the
# checks; nonces (replays, across SIGTERM and SIGKILL restarts, not burnt by
# a failed request); platform key rotation; the device signature on every
# answer; chsmctl refusing a device that is not the pinned one.
. "$(dirname "$0")/lib.sh"
it_begin auth

F=/gmt0088/v1
now_ms() { echo $(($(date +%s%N) / 1000000)); }
pubkey_body() { printf '{"publicKey":%s}' "$(jq -Rs . < "$1")"; }
# fingerprint_is FP: 7.4.1 (no authentication) shows that platform key.
fingerprint_is() {
  gmt_send GET $F/auth/platform-key/fingerprint /dev/null
  [ "$(resp_data .configured)" = true ] && [ "$(resp_data .fingerprint)" = "$1" ]
}
# sign_last_tbs: an SM2 signature by $SIGN_KEY over the string to sign of
# the last gmt_request, to send the very same request again.
sign_last_tbs() { openssl dgst -sm3 -sign "$SIGN_KEY" -sigopt distid:$DISTID "$IT_DIR/req.tbs" | base64 -w0; }
# A well-formed DER signature (r = s = 1) that verifies for nothing.
BAD_SIG=MAYCAQECAQE=

chsm_init
chsm_start
device_pub_pem
check "device key fingerprint (CLI) matches init's" [ "$(sm2_fingerprint "$IT_DIR/device.pub.pem")" = "$DEVICE_FP" ]

# ---- before enrollment (§4) ----
gmt_send GET $F/auth/platform-key/fingerprint /dev/null
expect_signed "7.4.1 answers without authentication" 0 200 ""
check "7.4.1: configured=false, fingerprint null" \
  [ "$(resp_data .configured)/$(resp_data .fingerprint)" = false/null ]
gmt_send GET $F/chsm /dev/null
expect_signed "platform interface without authentication headers" 2001 401 ""

PLATFORM_FP=$(sm2_keygen platform)
SIGN_KEY=$IT_DIR/platform.pem SIGN_KEY_ID=$PLATFORM_FP
for r in "GET $F/chsm" "GET $F/vsms" "POST $F/vsms/v1/start" "GET $F/tasks/task-1" "GET $F/metrics"; do
  gmt_request $r
  expect_signed "$r signed by SM2 before any platform key" 2005 403
done
gmt_request PUT $F/auth/platform-key "$(pubkey_body "$IT_DIR/platform.pub.pem")"
expect_signed "SM2 request to 7.4.2 before any platform key" 2005 403
GMT_HMAC_CODE=$ENROLL_CODE gmt_request GET $F/chsm
expect_signed "HMAC-SM3 with the enrollment code to another interface" 2001 401
GMT_HMAC_CODE=$ENROLL_CODE GMT_OMIT=X-GMT-Signature-Alg gmt_request PUT $F/auth/platform-key \
  "$(pubkey_body "$IT_DIR/platform.pub.pem")"
expect_signed "enrollment MAC without X-GMT-Signature-Alg (SM2-SM3 by default)" 2001 401
GMT_HMAC_CODE=$ENROLL_CODE GMT_KEY_ID=$PLATFORM_FP gmt_request PUT $F/auth/platform-key \
  "$(pubkey_body "$IT_DIR/platform.pub.pem")"
expect_signed "HMAC-SM3 with a key id other than 'enrollment'" 2001 401

# ---- wrong codes lock enrollment until the administrator resets it ----
# enroll_with CODE [BODY]: 7.4.2 MACed with CODE, by default for the key
# "platform".
enroll_with() { GMT_HMAC_CODE=$1 gmt_request PUT $F/auth/platform-key "${2:-$(pubkey_body "$IT_DIR/platform.pub.pem")}"; }
for i in 1 2 3 4 5; do
  enroll_with "WRONGCODE$(openssl rand -hex 8)"
  expect_signed "wrong enrollment code #$i" 2007 401
done
enroll_with "$ENROLL_CODE"
expect_signed "the right code after 5 wrong ones (locked)" 2007 401
gmt_send GET $F/auth/platform-key/fingerprint /dev/null
check "still no platform key" [ "$(resp_data .configured)" = false ]
check "admin reset-platform-key refuses while chsmd runs" \
  eval '! "$CHSM_BIN/chsmd" admin reset-platform-key --state-dir "$STATE" >/dev/null 2>&1'
chsm_stop
chsm_start
enroll_with "$ENROLL_CODE"
expect_signed "still locked after a restart" 2007 401
chsm_stop
out=$("$CHSM_BIN/chsmd" admin reset-platform-key --state-dir "$STATE") ||
  fail_now "admin reset-platform-key with chsmd stopped"
NEW_CODE=$(printf '%s\n' "$out" | sed -n 's/^enrollment-code: //p')
check "admin reset prints a new enrollment code" \
  [ "${#NEW_CODE}" -ge 20 ] && [ "$NEW_CODE" != "$ENROLL_CODE" ]
chsm_start
enroll_with "$ENROLL_CODE"
expect_signed "the old code after the reset" 2007 401
for i in 2 3 4; do
  enroll_with "WRONGCODE$(openssl rand -hex 8)"
  expect_signed "wrong code #$i after the reset" 2007 401
done
# None of these is a wrong code: a fifth would lock, a consumed code fail.
GMT_TS=1000 enroll_with "WRONGCODE$(openssl rand -hex 8)"
expect_signed "a wrong code with an old timestamp: the timestamp is checked first" 2003 401
enroll_with "$NEW_CODE" "$(pubkey_body "$IT_DIR/platform.pub.pem" | jq -c '.extra = 1')"
expect_signed "the right code with an unknown field" 1003 400
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$IT_DIR/p256.pem" 2>/dev/null
openssl pkey -in "$IT_DIR/p256.pem" -pubout -out "$IT_DIR/p256.pub.pem"
enroll_with "$NEW_CODE" "$(pubkey_body "$IT_DIR/p256.pub.pem")"
expect_signed "the right code with a P-256 key" 1003 400
enroll_with "$NEW_CODE"
expect_signed "the new code after four wrong ones and refused bodies enrolls" 0 200
check "enrollment answers the platform key fingerprint" [ "$(resp_data .fingerprint)" = "$PLATFORM_FP" ]
enroll_with "$NEW_CODE"
expect_signed "the same code again, new nonce (consumed)" 2007 401
check "7.4.1: configured=true with the CLI-computed fingerprint" fingerprint_is "$PLATFORM_FP"
check "7.4.1: configuredAt is a time" jqt "$RESP_BODY" '.data.configuredAt | type == "number" and . > 0'

# ---- §5: every failure, on GET /chsm (one case a line) ----
OTHER_FP=$(sm2_keygen other)
gmt_request GET $F/chsm
expect_signed "a well-formed signed request" 0 200
check "the check of device signatures fails for another nonce" eval '! device_signed "x$LAST_NONCE"'
T0=$(now_ms)
# DESCRIPTION | overrides for gmt_request | code | HTTP | nonce the answer is
# signed over ("-": the request's). A nonce and a timestamp made without a
# process come first; a case's own override follows and wins.
while IFS='|' read -r desc vars code status nonce; do
  [ -n "$desc" ] || continue
  printf -v n 'a%08x%08x' "$SRANDOM" "$SRANDOM"
  eval "GMT_NONCE=$n GMT_TS=$((${EPOCHREALTIME/[.,]/} / 1000)) $vars gmt_request GET $F/chsm" </dev/null
  [ "$nonce" = - ] && nonce=$LAST_NONCE
  expect_signed "$desc" "$code" "$status" "$nonce"
done <<EOF
no X-GMT-Timestamp|GMT_OMIT=X-GMT-Timestamp|2001|401|-
no X-GMT-Nonce|GMT_OMIT=X-GMT-Nonce|2001|401|
no X-GMT-Key-Id|GMT_OMIT=X-GMT-Key-Id|2001|401|-
no X-GMT-Signature|GMT_OMIT=X-GMT-Signature|2001|401|-
no X-GMT-Signature-Alg (SM2-SM3 is the default)|GMT_OMIT=X-GMT-Signature-Alg|0|200|-
timestamp not a number|GMT_TS=abc|2001|401|-
timestamp negative|GMT_TS=-$T0|2001|401|-
timestamp with a fraction|GMT_TS=$T0.5|2001|401|-
timestamp in hex|GMT_TS=0x$(printf %x "$T0")|2001|401|-
timestamp with a plus sign|GMT_TS=+$T0|2001|401|-
timestamp of 21 digits|GMT_TS=1${T0}0000000|2001|401|-
nonce of 15 characters|GMT_NONCE=$(openssl rand -hex 8 | cut -c1-15)|2001|401|
nonce of 16 characters|GMT_NONCE=$(openssl rand -hex 8)|0|200|-
nonce of 64 characters|GMT_NONCE=$(openssl rand -hex 32)|0|200|-
nonce of 65 characters|GMT_NONCE=$(openssl rand -hex 32)a|2001|401|
nonce with a dot|GMT_NONCE=$(openssl rand -hex 8).x|2001|401|
nonce with a plus|GMT_NONCE=$(openssl rand -hex 8)+x|2001|401|
nonce with a space|GMT_NONCE='$(openssl rand -hex 8) x'|2001|401|
nonce with a non-ASCII letter|GMT_NONCE=$(openssl rand -hex 8)é|2001|401|
nonce of _ and -|GMT_NONCE=__--$(openssl rand -hex 8)--__|0|200|-
alg SM2|GMT_ALG=SM2|2001|401|-
alg in lower case|GMT_ALG=sm2-sm3|2001|401|-
alg unknown|GMT_ALG=RSA-SHA256|2001|401|-
alg HMAC-SM3 with a platform key id|GMT_ALG=HMAC-SM3|2001|401|-
signature not base64|GMT_SIG='not*base64!'|2001|401|-
signature of 3 bytes|GMT_SIG=AAAA|2001|401|-
signature of 150 bytes|GMT_SIG=$(openssl rand -base64 150 | tr -d '\n')|2001|401|-
key id with a bad character|GMT_KEY_ID=${PLATFORM_FP:0:10}!|2001|401|-
key id of 65 characters|GMT_KEY_ID=${PLATFORM_FP}a|2001|401|-
key id 'enrollment' with SM2-SM3|GMT_KEY_ID=enrollment|2001|401|-
unknown key id|GMT_KEY_ID=$OTHER_FP|2006|401|-
the key id in upper case|GMT_KEY_ID=${PLATFORM_FP^^}|2006|401|-
timestamp 310 s in the past|GMT_TS=\$((\$(now_ms) - 310000))|2003|401|-
timestamp 310 s in the future|GMT_TS=\$((\$(now_ms) + 310000))|2003|401|-
timestamp 0|GMT_TS=0|2003|401|-
timestamp 290 s in the past|GMT_TS=\$((\$(now_ms) - 290000))|0|200|-
timestamp 290 s in the future|GMT_TS=\$((\$(now_ms) + 290000))|0|200|-
signed by another SM2 key, right key id|SIGN_KEY=$IT_DIR/other.pem|2002|401|-
signature over another target|GMT_SIGN_TARGET=$F/chsm/status|2002|401|-
signature over another method|GMT_SIGN_METHOD=POST|2002|401|-
signature over another body|GMT_SIGN_BODY='{}'|2002|401|-
well-formed DER signature that does not verify|GMT_SIG=$BAD_SIG|2002|401|-
order: malformed nonce and unknown key id|GMT_NONCE=short GMT_KEY_ID=$OTHER_FP|2001|401|
order: unknown key id and old timestamp|GMT_KEY_ID=$OTHER_FP GMT_TS=1000|2006|401|-
order: old timestamp and bad signature|GMT_TS=1000 SIGN_KEY=$IT_DIR/other.pem|2003|401|-
EOF

GMT_SIGN_TARGET=$F/chsm gmt_request GET "$F/chsm?x=1"
expect_signed "signature over the target without its query" 2002 401
body=$(pubkey_body "$IT_DIR/other.pub.pem")
GMT_SIGN_BODY="$body " gmt_request PUT $F/auth/platform-key "$body"
expect_signed "a body one byte off what was signed" 2002 401

# Header names are case-insensitive (HTTP/2 hops send them in lower case).
ts=$(now_ms) nonce=$(openssl rand -hex 16)
GMT_TS=$ts GMT_NONCE=$nonce GMT_SIG=$BAD_SIG gmt_request GET $F/chsm
expect_signed "a bad signature (to get the string to sign)" 2002 401
gmt_send GET $F/chsm /dev/null -H "x-gmt-timestamp: $ts" -H "x-gmt-nonce: $nonce" \
  -H "x-gmt-key-id: $SIGN_KEY_ID" -H "x-gmt-signature-alg: SM2-SM3" -H "x-gmt-signature: $(sign_last_tbs)"
expect_signed "authentication header names in lower case" 0 200 "$nonce"

# ---- nonces (§5 step 5) ----
gmt_request GET $F/chsm
N=$LAST_NONCE
GMT_NONCE=$N gmt_request GET $F/chsm
expect_signed "a replayed nonce" 2004 401
GMT_NONCE=$N gmt_request GET $F/chsm/status
expect_signed "a replayed nonce on another interface" 2004 401
GMT_NONCE=$N SIGN_KEY=$IT_DIR/other.pem gmt_request GET $F/chsm
expect_signed "order: replayed nonce and bad signature" 2002 401
N=$(openssl rand -hex 16)
GMT_NONCE=$N SIGN_KEY=$IT_DIR/other.pem gmt_request GET $F/chsm
expect_signed "a bad signature with a new nonce" 2002 401
GMT_NONCE=$N GMT_TS=1000 gmt_request GET $F/chsm
expect_signed "the same nonce with an old timestamp" 2003 401
GMT_NONCE=$N gmt_request GET $F/chsm
expect_signed "the same nonce, now well signed (not burnt by the failures)" 0 200

# replay_after HOW: sends two requests, restarts chsmd (chsm_stop or
# chsm_kill), and sends exactly the same requests (same headers) again
# (docs/api.md §1.4): the first, with a timestamp at or below the durable
# ceiling (its nonce was kept in memory only), is below the restart floor
# (2003); the second, 200 s ahead of the clock (above the ceiling: its
# nonce was committed before the answer), is a replay (2004). A new
# request right after the restart is accepted.
replay_after() {
  local ts nonce sig ts2 nonce2 sig2
  ts=$(now_ms) nonce=$(openssl rand -hex 16)
  gmt_request GET $F/vsms
  expect_signed "a request that raises the ceiling before the $1 restart" 0 200
  check "the durable ceiling passed the timestamp" eventually 10 ceiling_past "$ts"
  GMT_TS=$ts GMT_NONCE=$nonce GMT_SIG=$BAD_SIG gmt_request GET $F/vsms
  sig=$(sign_last_tbs)
  GMT_TS=$ts GMT_NONCE=$nonce GMT_SIG=$sig gmt_request GET $F/vsms
  expect_signed "request before the $1 restart" 0 200
  ts2=$(($(now_ms) + 200000)) nonce2=$(openssl rand -hex 16)
  check "the ceiling is below a timestamp 200 s ahead" eval "! ceiling_past $ts2"
  GMT_TS=$ts2 GMT_NONCE=$nonce2 GMT_SIG=$BAD_SIG gmt_request GET $F/vsms
  sig2=$(sign_last_tbs)
  GMT_TS=$ts2 GMT_NONCE=$nonce2 GMT_SIG=$sig2 gmt_request GET $F/vsms
  expect_signed "a request 200 s ahead before the $1 restart" 0 200
  $1
  chsm_start
  gmt_request GET $F/vsms
  expect_signed "a new request right after $1 and a restart" 0 200
  GMT_TS=$ts GMT_NONCE=$nonce GMT_SIG=$sig gmt_request GET $F/vsms
  expect_signed "the same request after $1 and a restart (below the floor)" 2003 401
  GMT_TS=$ts2 GMT_NONCE=$nonce2 GMT_SIG=$sig2 gmt_request GET $F/vsms
  expect_signed "the request 200 s ahead after $1 and a restart (its nonce was durable)" 2004 401
  gmt_request GET $F/vsms
  expect_signed "another new request after $1 and a restart" 0 200
}
replay_after chsm_stop
replay_after chsm_kill

# ---- every answer carries the device signature ----
gmt_request GET $F/no-such-interface
expect_signed "unknown interface, device-signed" 1004 404
gmt_request DELETE $F/chsm
expect_signed "wrong method, device-signed" 1005 405
gmt_send GET /elsewhere /dev/null
expect_signed "unsigned request outside the base path, device-signed" 1004 404 ""
gmt_request GET $F/metrics
check "the metrics (text, not an envelope) are device-signed" response_signature_ok "$LAST_NONCE"
gmt_send GET $F/chsm /dev/null -H "X-GMT-Nonce: $(printf 'n%.0s' $(seq 20))"
expect_signed "nonce alone: 2001, answer signed over that nonce" 2001 401 "$(printf 'n%.0s' $(seq 20))"

# ---- rotation (7.4.2 signed by the current key) ----
NEW_FP=$(sm2_keygen platform2)
gmt_request PUT $F/auth/platform-key "$(pubkey_body "$IT_DIR/platform2.pub.pem")"
expect_signed "rotation signed by the current key" 0 200
check "rotation answers the new fingerprint" [ "$(resp_data .fingerprint)" = "$NEW_FP" ]
gmt_request GET $F/chsm
expect_signed "the old key after rotation" 2006 401
SIGN_KEY=$IT_DIR/platform2.pem SIGN_KEY_ID=$NEW_FP
gmt_request GET $F/chsm
expect_signed "the new key after rotation" 0 200
check "7.4.1 shows the new key" fingerprint_is "$NEW_FP"
gmt_request PUT $F/auth/platform-key "$(pubkey_body "$IT_DIR/p256.pub.pem")"
expect_signed "rotation to a P-256 key" 1003 400
printf -- '-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END PUBLIC KEY-----\n' > "$IT_DIR/garbage.pem"
gmt_request PUT $F/auth/platform-key "$(pubkey_body "$IT_DIR/garbage.pem")"
expect_signed "rotation to garbage PEM" 1003 400
gmt_request PUT $F/auth/platform-key '{"publicKey":"not PEM at all"}'
expect_signed "rotation to a string that is not PEM" 1003 400
gmt_request PUT $F/auth/platform-key "$(pubkey_body "$IT_DIR/other.pem")"
expect_signed "rotation to an SM2 private key PEM" 1003 400
check "the key is unchanged after the refused rotations" fingerprint_is "$NEW_FP"

# ---- a rotation while requests signed by the old key are being verified ----
# Requests verify outside auth_lock, each with its own hold on the key it
# found: every one answers 0 (checked before the rotation) or 2006 (after),
# nothing else, and the service goes on.
NEW3_FP=$(sm2_keygen platform3)
ROT_PIDS=
for i in 1 2 3 4; do
  ( for j in $(seq 15); do
      if ctl chsm info >/dev/null 2>"$IT_DIR/rot.$i.err"; then echo 0
      else cut -d' ' -f1 "$IT_DIR/rot.$i.err"; fi
    done > "$IT_DIR/rot.$i" ) &
  ROT_PIDS="$ROT_PIDS $!"
done
gmt_request PUT $F/auth/platform-key "$(pubkey_body "$IT_DIR/platform3.pub.pem")"
expect_signed "rotation while old-key requests are verified" 0 200
wait $ROT_PIDS
check "every request around the rotation answered 0 or 2006" \
  eval '[ "$(cat "$IT_DIR"/rot.[1-4] | wc -l)" = 60 ] && ! grep -qv -e "^0$" -e "^2006$" "$IT_DIR"/rot.[1-4]'
SIGN_KEY=$IT_DIR/platform3.pem SIGN_KEY_ID=$NEW3_FP
gmt_request GET $F/chsm
expect_signed "the newest key after the rotation under load" 0 200

# ---- chsmctl pins the device key ----
check "chsmctl with the right device fingerprint" ctl chsm info >/dev/null
check "chsmctl refuses a device that is not the pinned one" eval '! "$CHSM_BIN/chsmctl" --url "$BASE" \
  --key "$SIGN_KEY" --cacert "$CACERT" --device-fingerprint "$OTHER_FP" chsm info >/dev/null 2>&1'

# ---- the administrator clears the platform key ----
chsm_stop
out=$("$CHSM_BIN/chsmd" admin reset-platform-key --state-dir "$STATE") || fail_now "admin reset after enrollment"
CODE3=$(printf '%s\n' "$out" | sed -n 's/^enrollment-code: //p')
chsm_start
gmt_send GET $F/auth/platform-key/fingerprint /dev/null
check "after the reset 7.4.1 shows no key" [ "$(resp_data .configured)" = false ]
gmt_request GET $F/chsm
expect_signed "the cleared key" 2005 403
enroll_with "$CODE3"
expect_signed "enrollment with the code of the second reset" 0 200
check "enrolled key is 'platform' again" fingerprint_is "$PLATFORM_FP"

for code in "$ENROLL_CODE" "$NEW_CODE" "$CODE3"; do
  check "enrollment code never in the chsmd log" eval '! grep -qF "$code" "$CHSMD_LOG"'
done
check "SIGTERM stops chsmd cleanly" chsm_stop
it_end
