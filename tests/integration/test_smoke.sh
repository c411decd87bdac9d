#!/usr/bin/env bash
# Smoke: init, start, enroll with an HMAC made by the openssl CLI, a signed
# GET, a response signature verified by the CLI, a clean stop.
. "$(dirname "$0")/lib.sh"
it_begin smoke
chsm_init --max-vsms 4
chsm_start
device_pub_pem
check "device key fingerprint (CLI) matches init's" [ "$(sm2_fingerprint "$IT_DIR/device.pub.pem")" = "$DEVICE_FP" ]
enroll_platform
expect "enrollment by HMAC-SM3" 0 200
check "enrollment answer signed by the device" response_signature_ok "$LAST_NONCE"
gmt_request GET /gmt0088/v1/chsm
expect "CHSM details with a CLI-signed request" 0 200
check "deviceId" [ "$(resp_data .deviceId)" = "$DEVICE_ID" ]
check "response signature verifies with the CLI" response_signature_ok "$LAST_NONCE"
check "chsmctl reads the status" ctl chsm status
check "SIGTERM stops chsmd cleanly" chsm_stop
it_end
