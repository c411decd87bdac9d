#!/usr/bin/env bash
# docs/openapi.yaml against the real chsmd: the document is valid OpenAPI 3.1
# (@seriousme/openapi-schema-validator) and every answer chsm-conform
# recorded (--record: every interface, success and error cases, with
# --image-dir and --destructive), every accepted request body and every
# callback validates against it (ajv, JSON Schema 2020-12):
# tests/openapi/validate.mjs. The npm packages are pinned by
# tests/openapi/package-lock.json and installed by scripts/install-deps.sh
# (npm ci); nothing is fetched here.
source "$(dirname "$0")/lib.sh"
it_begin test_openapi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NODE_DIR=$ROOT/tests/openapi
command -v node >/dev/null || fail_now "node is not installed: run scripts/install-deps.sh"
[ -d "$NODE_DIR/node_modules/ajv" ] && [ -d "$NODE_DIR/node_modules/@seriousme/openapi-schema-validator" ] ||
  fail_now "tests/openapi/node_modules is missing: run scripts/install-deps.sh (npm ci)"

openssl genpkey -algorithm SM2 -out "$IT_DIR/vendor.pem" 2>/dev/null || fail_now "vendor key"
openssl pkey -in "$IT_DIR/vendor.pem" -pubout -out "$IT_DIR/vendor.pub" 2>/dev/null
chsm_init --max-vsms 8 --vendor-key "$IT_DIR/vendor.pub"
chsm_start
mkdir -p "$IT_DIR/images" "$IT_DIR/record"
# The checker's verdict is test_conform's business; here only its record counts.
"$CHSM_BIN/chsm-conform" --url "$BASE" --enrollment-code "$ENROLL_CODE" --device-fingerprint "$DEVICE_FP" \
  --image-dir "$IT_DIR/images" --destructive --vendor-key "$IT_DIR/vendor.pem" \
  --task-timeout 60 --record "$IT_DIR/record" > "$IT_DIR/conform.txt" 2>&1
check "chsm-conform ran through (enrolled and walked the interfaces)" \
  grep -q '^conformance: [0-9]* passed' "$IT_DIR/conform.txt"

# The checker never sets a network document a device did not have (it
# would change the host's network); chsmd's default sandbox platform changes
# nothing on the host, so this test sets one, as the platform it enrolls
# after the checker's key is gone, and records the exchange too.
chsm_stop
out=$("$CHSM_BIN/chsmd" admin reset-platform-key --state-dir "$STATE") || fail_now "admin reset"
ENROLL_CODE=$(printf '%s\n' "$out" | sed -n 's/^enrollment-code: //p')
chsm_start
enroll_platform
net='{"hostname":"chsm-openapi","interfaces":[{"name":"eth0","address":"192.0.2.10/24","gateway":"192.0.2.1"}],"dns":["192.0.2.53"]}'
gmt_request PUT /gmt0088/v1/chsm/network "$net"
expect "7.2.4 with a valid document (sandbox platform)" 0 200
jq -n --arg body "$(cat "$RESP_BODY")" --arg req "$net" --argjson status "$RESP_STATUS" \
  --arg ct "$(resp_header Content-Type)" \
  '{method: "PUT", path: "/chsm/network", status: $status, contentType: $ct, body: $body, requestBody: $req}' \
  > "$IT_DIR/record/9999.json"

node "$NODE_DIR/validate.mjs" "$ROOT/docs/openapi.yaml" "$IT_DIR/record" > "$IT_DIR/validate.txt" 2>&1
rc=$?
grep -E '^(not ok|#)' "$IT_DIR/validate.txt" | head -n 40 | sed 's/^/#   /'
tail -n 1 "$IT_DIR/validate.txt" | sed 's/^/#   /'
check "the document is valid OpenAPI 3.1" grep -q '^ok - docs/openapi.yaml is a valid OpenAPI 3.1 document' "$IT_DIR/validate.txt"
check "every recorded answer, accepted body and callback validates; every operation exercised" [ "$rc" = 0 ]

# The validator is not vacuous: an answer with an undeclared member, one
# with a wrong type and an undocumented status are each refused.
mkdir -p "$IT_DIR/bad"
f=$(grep -l '"path":"/chsm","status":200' "$IT_DIR/record"/*.json | head -n 1)
python3 - "$f" "$IT_DIR/bad" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
def put(name, change):
    b = json.loads(r["body"]); x = dict(r); change(x, b); x["body"] = json.dumps(b)
    json.dump(x, open(f"{sys.argv[2]}/{name}.json", "w"))
put("0001", lambda x, b: b["data"].update(bogus=1))
put("0002", lambda x, b: b["data"]["capacity"].update(maxVsms="8"))
put("0003", lambda x, b: x.update(status=418))
EOF
node "$NODE_DIR/validate.mjs" "$ROOT/docs/openapi.yaml" "$IT_DIR/bad" > "$IT_DIR/bad.txt" 2>&1
check "an undeclared member in data is refused" grep -q '^not ok - 0001.json .*must NOT have additional properties' "$IT_DIR/bad.txt"
check "a wrong type is refused" grep -q '^not ok - 0002.json .*must be integer' "$IT_DIR/bad.txt"
check "an undocumented status is refused" grep -q '^not ok - 0003.json .*status 418 not documented' "$IT_DIR/bad.txt"
it_end
