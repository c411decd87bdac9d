#!/usr/bin/env bash
# The SDF library against real VSMs started through chsmd (PROFILE.md §12,
# docs/sdf.md, docs/vsm-protocol.md): a VSM created with small resources
# (7.3.12), given a token (7.3.4) and started (7.3.7); every SDF function
# through the C driver sdf_e2e (built as an application is, on
# <openchsm/sdf.h> and libopenchsm-sdf only) with exact SDR codes; its
# signatures, hashes, SM2 ciphertexts and SM4 results checked with the
# openssl CLI; wrong tokens, maxKeys and maxSessions, malformed frames on
# raw sockets before AUTH (the driver) and after it (vsmp_raw.py), threads
# on two VSMs, a VSM killed under an open session (7.3.2 fault); and the
# tenant example examples/tenant_sign_encrypt.
#
# Environment (set by CTest): CHSM_BIN, SDF_E2E (the driver), SDF_EXAMPLE,
# SDF_BUILD_DIR (optional: the build to install for the Makefile check).
. "$(dirname "$0")/lib.sh"
: "${SDF_E2E:?SDF_E2E must name the sdf_e2e driver}"
: "${SDF_EXAMPLE:?SDF_EXAMPLE must name the tenant_sign_encrypt example}"
it_begin sdf_chsmd
API=/gmt0088/v1
chsm_init
chsm_start
enroll_platform

# driver_lines FILE: counts the driver's ok / not ok lines as lib.sh's
# check does, and shows its other output as comments.
driver_lines() {
  local line
  while IFS= read -r line; do
    case $line in
      "ok - "*) IT_PASS=$((IT_PASS + 1)); echo "$line" ;;
      "not ok - "*) IT_FAIL=$((IT_FAIL + 1)); echo "$line" ;;
      *) echo "# $line" ;;
    esac
  done < "$1"
}

# driver SCENARIO ARGS...: runs sdf_e2e and requires exit status 0.
driver() {
  local rc=0 out=$IT_DIR/driver.out
  "$SDF_E2E" "$@" > "$out" 2>&1 || rc=$?
  driver_lines "$out"
  check "sdf_e2e $1 exits 0 (got $rc)" [ "$rc" = 0 ]
}

# use_vsm NAME: the library's environment for token file $IT_DIR/NAME.secret
# and the endpoint and token id in NAME's variables.
use_vsm() {
  local ep=EP_$1 tid=TID_$1
  export OPENCHSM_SDF_ENDPOINT=${!ep} OPENCHSM_SDF_TOKEN_ID=${!tid}
  export OPENCHSM_SDF_TOKEN_SECRET_FILE=$IT_DIR/$1.secret
  unset OPENCHSM_SDF_CONFIG
}

# write_conf FILE ENDPOINT TOKENID SECRETFILE: a configuration file.
write_conf() {
  printf '# %s\nendpoint = %s\ntoken_id = %s\ntoken_secret_file = %s\n' \
    "$(basename "$1")" "$2" "$3" "$4" > "$1"
}

# ---- VSM a: 7.3.12 with small resources, 7.3.4 token, 7.3.7 start ----
P_A=$(free_port)
task_ok "create VSM a (maxKeys 4, maxSessions 3)" POST $API/vsms \
  "{\"vsmId\":\"sdfa\",\"name\":\"sdf a\",\"network\":$(vsm_net 127.0.0.1 "$P_A"),
    \"resources\":{\"maxKeys\":4,\"maxSessions\":3,\"memoryMiB\":32}}"
SECRET_A=$(openssl rand -base64 32)
gmt_request PUT $API/vsms/sdfa/token "{\"tokenId\":\"tenant-a\",\"secret\":\"$SECRET_A\"}"
expect "7.3.4 token of VSM a" 0 200
task_ok "7.3.7 start VSM a" POST $API/vsms/sdfa/start
check "VSM a running" vsm_state_is sdfa running
gmt_request GET $API/vsms/sdfa
check "VSM a resources" jqt "$RESP_BODY" '.data.resources.maxKeys == 4 and .data.resources.maxSessions == 3'
EP_sdfa=$(resp_data .serviceEndpoint)
TID_sdfa=tenant-a
check "VSM a endpoint 127.0.0.1:$P_A" [ "$EP_sdfa" = "127.0.0.1:$P_A" ]
printf '%s' "$SECRET_A" | base64 -d > "$IT_DIR/sdfa.secret"
chmod 600 "$IT_DIR/sdfa.secret"
write_conf "$IT_DIR/a.conf" "$EP_sdfa" tenant-a sdfa.secret
use_vsm sdfa

# ---- every function, exact codes ----
FX=$IT_DIR/fx
mkdir -p "$FX"
{ printf 'OpenCHSM SDF end-to-end message\n'; head -c 3000 /dev/urandom | base64; } > "$FX/msg.bin"
sm2_keygen ext > /dev/null
openssl pkey -pubin -in "$IT_DIR/ext.pub.pem" -outform DER | tail -c 65 > "$FX/ext.point"
openssl dgst -sm3 -sign "$IT_DIR/ext.pem" -sigopt distid:$DISTID -out "$FX/ossl.sig.der" "$FX/msg.bin"
driver functions "$FX" sdfa

# ---- the driver's results checked with the openssl CLI ----
# point_pem POINTFILE PEM: a SubjectPublicKeyInfo for an SM2 point.
point_pem() {
  { printf '3059301306072a8648ce3d020106082a811ccf5501822d034200'; xxd -p "$1" | tr -d '\n'; } |
    xxd -r -p | openssl pkey -pubin -inform DER -out "$2" 2>/dev/null
}
hexf() { xxd -p "$1" | tr -d '\n'; }
check "sign 1's public key as PEM" point_pem "$FX/sign1.point" "$FX/sign1.pem"
check "openssl verifies SDF_InternalSign_ECC over SM3(Z || msg)" bash -c \
  "openssl dgst -sm3 -verify '$FX/sign1.pem' -sigopt distid:$DISTID -signature '$FX/sign1.sig.der' '$FX/msg.bin' | grep -qx 'Verified OK'"
printf 'x' >> "$FX/msg.bin"
check "openssl refuses it over another message" bash -c \
  "! openssl dgst -sm3 -verify '$FX/sign1.pem' -sigopt distid:$DISTID -signature '$FX/sign1.sig.der' '$FX/msg.bin' >/dev/null 2>&1"
truncate -s -1 "$FX/msg.bin"
check "SDF_Hash* without a key equals openssl dgst -sm3" \
  [ "$(hexf "$FX/msg.sm3")" = "$(sm3_hex "$FX/msg.bin")" ]
check "openssl decrypts SDF_ExternalEncrypt_ECC" bash -c \
  "[ \"\$(openssl pkeyutl -decrypt -inkey '$IT_DIR/ext.pem' -in '$FX/ext.cipher.der')\" = 'a secret for the openssl CLI' ]"
openssl pkeyutl -decrypt -inkey "$IT_DIR/ext.pem" -in "$FX/epk.cipher.der" -out "$FX/epk.key" 2>/dev/null
check "openssl decrypts the SDF_GenerateKeyWithEPK_ECC key (16 bytes)" [ "$(stat -c %s "$FX/epk.key" 2>/dev/null)" = 16 ]
# sm4_same NAME: NAME.ecb / .cbc / .mac equal the openssl CLI's with NAME.key.
sm4_same() {
  local k iv
  k=$(hexf "$FX/$1.key"); iv=$(hexf "$FX/sm4.iv")
  openssl enc -sm4-ecb -nopad -K "$k" -in "$FX/sm4.data" -out "$FX/$1.ossl.ecb"
  openssl enc -sm4-cbc -nopad -K "$k" -iv "$iv" -in "$FX/sm4.data" -out "$FX/$1.ossl.cbc"
  check "$1: SDF_Encrypt SM4-ECB equals openssl enc -sm4-ecb" cmp -s "$FX/$1.ecb" "$FX/$1.ossl.ecb"
  check "$1: SDF_Encrypt SM4-CBC equals openssl enc -sm4-cbc" cmp -s "$FX/$1.cbc" "$FX/$1.ossl.cbc"
  check "$1: SDF_CalculateMAC is the last SM4-CBC block" \
    [ "$(hexf "$FX/$1.mac")" = "$(tail -c 16 "$FX/$1.ossl.cbc" | xxd -p)" ]
}
sm4_same epk
sm4_same isk
check "isk: SDF_Encrypt of 1 MiB equals openssl enc -sm4-ecb" bash -c \
  "openssl enc -sm4-ecb -nopad -K $(hexf "$FX/isk.key") -in '$FX/big.data' | cmp -s - '$FX/big.ecb'"
D=$(hexf "$FX/pair.d")
printf '30310201010420%sa00a06082a811ccf5501822d' "$D" | xxd -r -p > "$FX/pair.der"
check "SDF_GenerateKeyPair_ECC: openssl derives the same public key from d" bash -c \
  "openssl pkey -inform DER -in '$FX/pair.der' -pubout -outform DER | tail -c 65 | cmp -s - '$FX/pair.point'"
rm -f "$FX/pair.d" "$FX/pair.der"
gmt_request GET $API/vsms/sdfa
check "7.3.1 keyCount of VSM a counts the keys made through SDF" jqt "$RESP_BODY" '.data.keyCount == 7'

# ---- tokens ----
SHOWN=$(openssl rand 32 | base64 -w0)
printf '%s' "$SHOWN" | base64 -d > "$IT_DIR/wrong.secret"
write_conf "$IT_DIR/wrong-secret.conf" "$EP_sdfa" tenant-a wrong.secret
write_conf "$IT_DIR/unknown-id.conf" "$EP_sdfa" nobody sdfa.secret
write_conf "$IT_DIR/nothing.conf" "127.0.0.1:$(free_port)" tenant-a sdfa.secret
driver open SDR_PARDENY "$IT_DIR/wrong-secret.conf" SDR_PARDENY "$IT_DIR/a.conf"
driver open-wait
driver open SDR_PARDENY "$IT_DIR/unknown-id.conf"
driver open-wait
driver open SDR_OK "$IT_DIR/a.conf" SDR_OPENSESSION "$IT_DIR/nothing.conf" \
  SDR_OPENDEVICE "$IT_DIR/no-such.conf" SDR_OK -
OPENCHSM_SDF_TOKEN_SECRET_FILE=$IT_DIR/no-such.secret driver open SDR_OPENDEVICE -
OPENCHSM_SDF_CONFIG=$IT_DIR/a.conf OPENCHSM_SDF_ENDPOINT=127.0.0.1:1 driver open SDR_OK -

# ---- maxSessions, malformed frames ----
driver sessions 3
driver frames

# ---- malformed frames after AUTH: a raw client in Python (vsmp_raw.py) ----
raw() { python3 "$(dirname "$0")/vsmp_raw.py" 127.0.0.1 "$P_A" tenant-a "$IT_DIR/sdfa.secret" "$1"; }
OUT=$(raw valid)
check "raw client: a valid request is answered, the session stays ($OUT)" \
  [ "$OUT" = "status=0x00000000 type=0x8011 id=7 len=8 closed=no" ]
while IFS='|' read -r name type; do
  OUT=$(raw "$name")
  check "after AUTH, $name: an SDR_COMMFAIL frame, then the VSM closes ($OUT)" \
    [ "$OUT" = "status=0x01000003 type=$type id=7 len=0 closed=yes" ]
done <<'CASES'
unknown-type|0x8999
oversized|0x8011
response-type|0x8011
status-set|0x8011
flags-set|0x8011
short-payload|0x8011
trailing-bytes|0x8011
bytes-past-payload|0x8020
bytes-over-max|0x8020
auth-again|0x8002
CASES
driver open SDR_OK -
gmt_request GET $API/vsms/sdfa/status
expect "7.3.2 of VSM a after the malformed frames" 0 200
check "7.3.2: VSM a still running" [ "$(resp_data .state)" = running ]

# ---- VSM b, created with its token and started (7.3.12) ----
P_B=$(free_port)
SECRET_B=$(openssl rand -base64 48)
task_ok "create and start VSM b" POST $API/vsms \
  "{\"vsmId\":\"sdfb\",\"name\":\"sdf b\",\"network\":$(vsm_net 127.0.0.1 "$P_B"),\"start\":true,
    \"token\":{\"tokenId\":\"tenant-b\",\"secret\":\"$SECRET_B\"},
    \"resources\":{\"maxKeys\":16,\"maxSessions\":8,\"memoryMiB\":32}}"
EP_sdfb=127.0.0.1:$P_B
TID_sdfb=tenant-b
printf '%s' "$SECRET_B" | base64 -d > "$IT_DIR/sdfb.secret"
write_conf "$IT_DIR/b.conf" "$EP_sdfb" tenant-b sdfb.secret

# ---- the tenant example ----
use_vsm sdfb
EX=$IT_DIR/example.out
"$SDF_EXAMPLE" 1 2 "hello from the tenant" > "$EX" 2>&1
check "example: exit 0" [ $? = 0 ]
sed 's/^/#   /' "$EX"
check "example: generated signing key 1" grep -qx 'signing key 1: generated' "$EX"
check "example: signed and verified" grep -qx 'signature verified' "$EX"
check "example: generated KEK 2" grep -qx 'KEK 2: generated' "$EX"
check "example: decrypted the message" grep -qx 'decrypted: hello from the tenant' "$EX"
check "example: done" grep -qx 'done' "$EX"
OPENCHSM_SDF_CONFIG=$IT_DIR/b.conf OPENCHSM_SDF_ENDPOINT= "$SDF_EXAMPLE" 1 2 "again, from a configuration file" > "$EX" 2>&1
check "example with OPENCHSM_SDF_CONFIG: exit 0" [ $? = 0 ]
check "example: the keys are now present" bash -c "grep -qx 'signing key 1: present' '$EX' && grep -qx 'KEK 2: present' '$EX'"
check "example: 32 bytes of message, 32 bytes of ciphertext" bash -c "grep -Eqx 'ciphertext: [0-9a-f]{64}' '$EX'"
"$SDF_EXAMPLE" 17 2 "past maxKeys" > "$EX" 2>&1
check "example: an index past maxKeys exits 1" [ $? = 1 ]
check "example: it names SDR_INARGERR" grep -q 'SDR_INARGERR (0x0100001D)' "$EX"
"$SDF_EXAMPLE" 1 > "$EX" 2>&1
check "example: bad arguments exit 2" [ $? = 2 ]

# the example built as examples/README.md says: installed library,
# pkg-config, the standalone Makefile
if [ -n "${SDF_BUILD_DIR:-}" ]; then
  cmake --install "$SDF_BUILD_DIR" --prefix "$IT_DIR/inst" > "$IT_DIR/install.log" 2>&1
  PC=$(find "$IT_DIR/inst" -name openchsm-sdf.pc | head -n 1)
  check "installed: openchsm-sdf.pc" [ -n "$PC" ]
  mkdir -p "$IT_DIR/ex"
  cp "$(dirname "$0")/../../examples/Makefile" "$(dirname "$0")/../../examples/tenant_sign_encrypt.c" "$IT_DIR/ex/"
  check "examples/Makefile builds with pkg-config against the installed library" \
    env PKG_CONFIG_PATH="$(dirname "$PC")" make -s -C "$IT_DIR/ex" CFLAGS="${SDF_EXAMPLE_CFLAGS:--O2 -Wall -Wextra}"
  LD_LIBRARY_PATH=$(dirname "$(dirname "$PC")") "$IT_DIR/ex/tenant_sign_encrypt" 1 2 "from the installed library" > "$EX" 2>&1
  check "the installed build runs: exit 0" [ $? = 0 ]
  check "the installed build decrypts" grep -qx 'decrypted: from the installed library' "$EX"
fi

# ---- threads on two VSMs at once ----
driver threads "$IT_DIR/a.conf:4" "$IT_DIR/b.conf:1"

# the example's errors that start the token back-off, after the threads
OPENCHSM_SDF_TOKEN_SECRET_FILE=$IT_DIR/wrong.secret "$SDF_EXAMPLE" 1 2 "x" > "$EX" 2>&1
check "example: a wrong token exits 1" [ $? = 1 ]
check "example: it names SDR_PARDENY" grep -q 'open a session: SDR_PARDENY (0x01000007)' "$EX"
OPENCHSM_SDF_TOKEN_SECRET_FILE= "$SDF_EXAMPLE" 1 2 "x" > "$EX" 2>&1
check "example: no configuration names SDR_OPENDEVICE" grep -q 'open the device: SDR_OPENDEVICE' "$EX"
check "the secrets appear in no output" bash -c \
  "! grep -rqF -e '$SECRET_A' -e '$SECRET_B' -e '$SHOWN' '$IT_DIR'/*.out '$CHSMD_LOG'"

# ---- VSM a killed under an open session ----
use_vsm sdfa
KD=$IT_DIR/killed
mkdir -p "$KD"
"$SDF_E2E" killed "$KD" > "$IT_DIR/killed.out" 2>&1 &
DRV=$!
check "the driver holds a session" eventually 30 test -e "$KD/ready"
sessions_are() { gmt_request GET $API/vsms/sdfa/status; [ "$(resp_data .sessions)" = "$1" ]; }
check "7.3.2 of VSM a counts the driver's one session" eventually 15 sessions_are 1
VPID=$(vsm_pid sdfa)
check "VSM a has one process" [ "$(printf '%s' "$VPID" | wc -w)" = 1 ]
kill -KILL "$VPID"
touch "$KD/killed"
rc=0
wait "$DRV" || rc=$?
driver_lines "$IT_DIR/killed.out"
check "sdf_e2e killed exits 0 (got $rc)" [ "$rc" = 0 ]
check "7.3.1: VSM a in fault" eventually 10 vsm_state_is sdfa fault
gmt_request GET $API/vsms/sdfa/status
expect "7.3.2 of the killed VSM" 0 200
check "7.3.2: fault, with lastError" jqt "$RESP_BODY" '.data.state == "fault" and (.data.lastError | type == "string")'
check "VSM b unaffected" vsm_state_is sdfb running

it_end
