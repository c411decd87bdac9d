#!/usr/bin/env bash
# vsmtool (docs/sdf.md#vsmtool) against a real VSM: every command, checked
# against the openssl CLI and an independent computation of SM2's Z in
# Python; the exit-status contract (1 with the SDR name for refusals and
# bad signatures or files, 2 for usage); then the VSM's per-algorithm
# operation counters and sessions in /metrics.
. "$(dirname "$0")/lib.sh"
it_begin vsmtool
API=/gmt0088/v1
chsm_init
chsm_start
device_pub_pem
enroll_platform

# ---- a running VSM whose token is set through 7.3.4 ----
PV=$(free_port)
task_ok "create t1 (started)" POST $API/vsms "{\"vsmId\":\"t1\",\"name\":\"tool\",\"network\":$(vsm_net 127.0.0.1 "$PV"),\"start\":true}"
check "t1 listens" eventually 10 listening 127.0.0.1 "$PV"
openssl rand -base64 32 > "$IT_DIR/token.b64"
gmt_request PUT $API/vsms/t1/token "{\"tokenId\":\"tool-app\",\"secret\":\"$(tr -d '\n' < "$IT_DIR/token.b64")\"}"
expect "token set (7.3.4)" 0 200

T() { vsm_tool "$PV" tool-app "$IT_DIR/token.b64" "$@"; }
# rc_is WANT COMMAND...: the command exits with status WANT; its stderr is
# kept in $IT_DIR/err.
rc_is() {
  local want=$1 rc=0; shift
  "$@" >"$IT_DIR/out" 2>"$IT_DIR/err" || rc=$?
  [ "$rc" = "$want" ] || { echo "# exit $rc, wanted $want: $(head -c 300 "$IT_DIR/err")"; return 1; }
}
err_has() { grep -qF -- "$1" "$IT_DIR/err" || { echo "# stderr: $(head -c 300 "$IT_DIR/err")"; return 1; }; }
# flip_byte SRC OFFSET DST: DST is a copy of SRC with the byte at OFFSET xored with 1.
flip_byte() {
  cp "$1" "$3"
  local b; b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "\\x$(printf %02x $((b ^ 1)))" | dd of="$3" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

# ---- info, random ----
check "info" rc_is 0 T info
check "info: device name and buffer size" eval 'grep -q "^device_name: " "$IT_DIR/out" && grep -q "^buffer_size: " "$IT_DIR/out"'
T random --bytes 33 > "$IT_DIR/rand"
check "random --bytes 33: 66 hex digits" grep -Eqx '[0-9a-f]{66}' "$IT_DIR/rand"
check "random: another call differs" [ "$(T random --bytes 33)" != "$(cat "$IT_DIR/rand")" ]

# ---- keys ----
N_KEYGEN=0
check "keygen --index 1 (sign by default)" rc_is 0 T keygen --index 1 && N_KEYGEN=$((N_KEYGEN + 1))
check "keygen --index 2 --usage enc" rc_is 0 T keygen --index 2 --usage enc && N_KEYGEN=$((N_KEYGEN + 1))
printf 'pin-1234\n' > "$IT_DIR/pw"
check "keygen --index 3 with a password file" rc_is 0 T keygen --index 3 --password-file "$IT_DIR/pw" && N_KEYGEN=$((N_KEYGEN + 1))
check "kek-gen --index 4" rc_is 0 T kek-gen --index 4 && N_KEYGEN=$((N_KEYGEN + 1))
check "kek-gen --index 1 (a KEK beside the signing key 1)" rc_is 0 T kek-gen --index 1 && N_KEYGEN=$((N_KEYGEN + 1))
T list > "$IT_DIR/list"
check "list: five keys" [ "$(wc -l < "$IT_DIR/list")" = 5 ]
check "list: sign 1 without password" grep -Eqx 'sign 1 password=no created=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z' "$IT_DIR/list"
check "list: enc 2" grep -Eq '^enc 2 password=no created=' "$IT_DIR/list"
check "list: sign 3 with password" grep -Eq '^sign 3 password=yes created=' "$IT_DIR/list"
check "list: kek 4 and kek 1" eval 'grep -Eq "^kek 4 password=no" "$IT_DIR/list" && grep -Eq "^kek 1 password=no" "$IT_DIR/list"'

T pubkey --index 1 > "$IT_DIR/pub1.pem"
check "pubkey: openssl reads the SubjectPublicKeyInfo" eval 'openssl pkey -pubin -in "$IT_DIR/pub1.pem" -text -noout 2>/dev/null | grep -q "ASN1 OID: SM2"'
T pubkey --index 2 --usage enc > "$IT_DIR/pub2.pem"
check "pubkey --usage enc: a different key" eval 'openssl pkey -pubin -in "$IT_DIR/pub2.pem" -noout && ! cmp -s "$IT_DIR/pub1.pem" "$IT_DIR/pub2.pem"'

# ---- sign: vsmtool signs, openssl verifies ----
head -c 100000 /dev/urandom > "$IT_DIR/doc"
flip_byte "$IT_DIR/doc" 5000 "$IT_DIR/doc.flipped"
N_SIGN=0
check "sign --index 1" rc_is 0 T sign --index 1 --in "$IT_DIR/doc" && N_SIGN=$((N_SIGN + 1))
base64 -d < "$IT_DIR/out" > "$IT_DIR/sig.der"
check "sign: openssl verifies with distid 1234567812345678" eval 'openssl dgst -sm3 -verify "$IT_DIR/pub1.pem" -sigopt distid:1234567812345678 -signature "$IT_DIR/sig.der" "$IT_DIR/doc" | grep -q "Verified OK"'
check "sign: openssl refuses it for a flipped file" eval '! openssl dgst -sm3 -verify "$IT_DIR/pub1.pem" -sigopt distid:1234567812345678 -signature "$IT_DIR/sig.der" "$IT_DIR/doc.flipped" >/dev/null 2>&1'
check "sign --id alice@example" rc_is 0 T sign --index 1 --in "$IT_DIR/doc" --id alice@example && N_SIGN=$((N_SIGN + 1))
base64 -d < "$IT_DIR/out" > "$IT_DIR/sig-alice.der"
check "sign --id: openssl verifies with that distid" eval 'openssl dgst -sm3 -verify "$IT_DIR/pub1.pem" -sigopt distid:alice@example -signature "$IT_DIR/sig-alice.der" "$IT_DIR/doc" | grep -q "Verified OK"'
check "sign with the password of key 3" rc_is 0 T sign --index 3 --in "$IT_DIR/doc" --password-file "$IT_DIR/pw" && N_SIGN=$((N_SIGN + 1))
printf 'wrong\n' > "$IT_DIR/badpw"
check "sign with a wrong password: exit 1" rc_is 1 T sign --index 3 --in "$IT_DIR/doc" --password-file "$IT_DIR/badpw"
check "sign with a wrong password: an SDR name and code" grep -Eq '^vsmtool: SDR_[A-Z]+ \(0x010000[0-9A-F]{2}\)$' "$IT_DIR/err"

# ---- verify: ours and openssl's signatures ----
N_VERIFY=0
base64 -w0 "$IT_DIR/sig.der" > "$IT_DIR/sig.b64"
check "verify --index 1 (base64 signature)" rc_is 0 T verify --index 1 --in "$IT_DIR/doc" --sig "$IT_DIR/sig.b64" && N_VERIFY=$((N_VERIFY + 1))
check "verify: prints OK" grep -qx OK "$IT_DIR/out"
check "verify --index 1 (DER signature)" rc_is 0 T verify --index 1 --in "$IT_DIR/doc" --sig "$IT_DIR/sig.der" && N_VERIFY=$((N_VERIFY + 1))
check "verify of a flipped file: exit 1" rc_is 1 T verify --index 1 --in "$IT_DIR/doc.flipped" --sig "$IT_DIR/sig.der" && N_VERIFY=$((N_VERIFY + 1))
check "verify of a flipped file: SDR_VERIFYERR" err_has "SDR_VERIFYERR (0x0100000E)"
check "verify with the wrong ID: exit 1" rc_is 1 T verify --index 1 --in "$IT_DIR/doc" --sig "$IT_DIR/sig-alice.der" && N_VERIFY=$((N_VERIFY + 1))
check "verify --id alice@example" rc_is 0 T verify --index 1 --in "$IT_DIR/doc" --sig "$IT_DIR/sig-alice.der" --id alice@example && N_VERIFY=$((N_VERIFY + 1))
openssl genpkey -algorithm SM2 -out "$IT_DIR/ext.pem" 2>/dev/null
openssl pkey -in "$IT_DIR/ext.pem" -pubout -out "$IT_DIR/ext.pub.pem"
openssl dgst -sm3 -sign "$IT_DIR/ext.pem" -sigopt distid:1234567812345678 -out "$IT_DIR/ext.sig" "$IT_DIR/doc"
check "verify --pubkey: an openssl key and signature" rc_is 0 T verify --pubkey "$IT_DIR/ext.pub.pem" --in "$IT_DIR/doc" --sig "$IT_DIR/ext.sig" && N_VERIFY=$((N_VERIFY + 1))
check "verify --pubkey of a flipped file: exit 1, SDR_VERIFYERR" eval 'rc_is 1 T verify --pubkey "$IT_DIR/ext.pub.pem" --in "$IT_DIR/doc.flipped" --sig "$IT_DIR/ext.sig" && err_has SDR_VERIFYERR' && N_VERIFY=$((N_VERIFY + 1))
check "verify --pubkey with another key: exit 1" rc_is 1 T verify --pubkey "$IT_DIR/pub1.pem" --in "$IT_DIR/doc" --sig "$IT_DIR/ext.sig" && N_VERIFY=$((N_VERIFY + 1))

# ---- hash ----
check "hash equals openssl dgst -sm3" [ "$(T hash --in "$IT_DIR/doc")" = "$(sm3_hex "$IT_DIR/doc")" ]
: > "$IT_DIR/empty"
check "hash of an empty file" [ "$(T hash --in "$IT_DIR/empty")" = "$(sm3_hex "$IT_DIR/empty")" ]
# e = SM3(Z || M), Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA)
# (GB/T 32918.2), computed here from the exported public key with Python.
z_hash() {
  openssl pkey -pubin -in "$1" -outform DER | tail -c 64 > "$IT_DIR/xy"
  python3 - "$IT_DIR/xy" "$2" "$3" <<'EOF'
import hashlib, sys
xy = open(sys.argv[1], "rb").read()
uid = sys.argv[2].encode()
p = bytes.fromhex
curve = (p("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC") +
         p("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93") +
         p("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7") +
         p("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0"))
z = hashlib.new("sm3", (len(uid) * 8).to_bytes(2, "big") + uid + curve + xy).digest()
print(hashlib.new("sm3", z + open(sys.argv[3], "rb").read()).hexdigest())
EOF
}
check "hash --pubkey-index 1: SM3(Z || M) as computed independently" \
  [ "$(T hash --in "$IT_DIR/doc" --pubkey-index 1)" = "$(z_hash "$IT_DIR/pub1.pem" 1234567812345678 "$IT_DIR/doc")" ]
check "hash --pubkey-index 1 --id alice@example" \
  [ "$(T hash --in "$IT_DIR/doc" --pubkey-index 1 --id alice@example)" = "$(z_hash "$IT_DIR/pub1.pem" alice@example "$IT_DIR/doc")" ]

# ---- encrypt, decrypt ----
head -c 700001 /dev/urandom > "$IT_DIR/big"   # three calls of 256 KiB, not a block multiple
check "encrypt --mode cbc (default)" rc_is 0 T encrypt --kek-index 4 --in "$IT_DIR/big" --out "$IT_DIR/big.enc"
check "encrypted file: header, padded ciphertext and MAC" [ "$(stat -c %s "$IT_DIR/big.enc")" = $((80 + 700016 + 16)) ]
check "encrypted file: magic, version 1, CBC, KEK 4" [ "$(head -c 16 "$IT_DIR/big.enc" | od -An -tx1 | tr -d ' \n')" = 4f4348534d534d340102000000000004 ]
check "decrypt: round trip" eval 'rc_is 0 T decrypt --kek-index 4 --in "$IT_DIR/big.enc" --out "$IT_DIR/big.dec" && cmp "$IT_DIR/big" "$IT_DIR/big.dec"'
check "encrypt --mode ecb" rc_is 0 T encrypt --kek-index 4 --in "$IT_DIR/doc" --out "$IT_DIR/doc.ecb" --mode ecb
check "decrypt (ECB): round trip" eval 'rc_is 0 T decrypt --kek-index 4 --in "$IT_DIR/doc.ecb" --out "$IT_DIR/doc.ecb.dec" && cmp "$IT_DIR/doc" "$IT_DIR/doc.ecb.dec"'
check "encrypt an empty file" rc_is 0 T encrypt --kek-index 4 --in "$IT_DIR/empty" --out "$IT_DIR/empty.enc"
check "decrypt it: empty" eval 'rc_is 0 T decrypt --kek-index 4 --in "$IT_DIR/empty.enc" --out "$IT_DIR/empty.dec" && [ ! -s "$IT_DIR/empty.dec" ] && [ -e "$IT_DIR/empty.dec" ]'
check "two encryptions of one file differ (fresh key and IV)" eval 'T encrypt --kek-index 4 --in "$IT_DIR/big" --out "$IT_DIR/big.enc2" && ! cmp -s "$IT_DIR/big.enc" "$IT_DIR/big.enc2"'
for t in "20:the wrapped encryption key" "40:the wrapped MAC key" "50:the IV" "9:the mode" \
         "70:the length" "80:the first ciphertext block" "400000:the middle" \
         "$((80 + 700016 - 1)):the last ciphertext block" "$((80 + 700016 + 3)):the MAC"; do
  off=${t%%:*}; what=${t#*:}
  flip_byte "$IT_DIR/big.enc" "$off" "$IT_DIR/t.enc"
  rm -f "$IT_DIR/t.dec"
  check "tampered $what: decrypt exits 1" rc_is 1 T decrypt --kek-index 4 --in "$IT_DIR/t.enc" --out "$IT_DIR/t.dec"
  check "tampered $what: an SDR name on stderr" grep -Eq 'SDR_(MACERR|ENCDATAERR) \(0x010000' "$IT_DIR/err"
  check "tampered $what: no output file" [ ! -e "$IT_DIR/t.dec" ]
done
head -c $((80 + 700016)) "$IT_DIR/big.enc" > "$IT_DIR/t.enc"
check "truncated file: decrypt exits 1" rc_is 1 T decrypt --kek-index 4 --in "$IT_DIR/t.enc" --out "$IT_DIR/t.dec"
check "decrypt with another KEK index: exit 1" rc_is 1 T decrypt --kek-index 1 --in "$IT_DIR/big.enc" --out "$IT_DIR/t.dec"
check "no temporary files left beside the outputs" eval '! ls "$IT_DIR"/*.tmp.* >/dev/null 2>&1'

# ---- delete ----
check "delete an index holding a sign key and a KEK without --usage: exit 2" rc_is 2 T delete --index 1
check "delete: the message says to give --usage" err_has "--usage"
check "delete --index 1 --usage kek" rc_is 0 T delete --index 1 --usage kek
check "delete --index 1 (now only the sign key)" rc_is 0 T delete --index 1
check "sign with the deleted key: exit 1" rc_is 1 T sign --index 1 --in "$IT_DIR/doc"
check "sign with the deleted key: SDR_KEYNOTEXIST" err_has "SDR_KEYNOTEXIST (0x01000008)"
check "delete an empty index: exit 1, SDR_KEYNOTEXIST" eval 'rc_is 1 T delete --index 9 && err_has SDR_KEYNOTEXIST'
check "list: three keys left" [ "$(T list | wc -l)" = 3 ]

# ---- the token and the exit-status contract ----
printf '%s' "$(tr -d '\n' < "$IT_DIR/token.b64")" > "$IT_DIR/token-nonl.b64"
check "a secret file without its final newline works" rc_is 0 vsm_tool "$PV" tool-app "$IT_DIR/token-nonl.b64" info
base64 -d < "$IT_DIR/token.b64" > "$IT_DIR/token.raw"
check "a raw (not base64) secret file is refused: exit 1" rc_is 1 vsm_tool "$PV" tool-app "$IT_DIR/token.raw" info
printf 'endpoint = 127.0.0.1:%s\ntoken_id = tool-app\ntoken_secret_base64_file = token.b64\n' "$PV" > "$IT_DIR/sdf.conf"
check "--config with token_secret_base64_file" rc_is 0 "$CHSM_BIN/vsmtool" --config "$IT_DIR/sdf.conf" random --bytes 4
check "the environment with the raw secret file" \
  rc_is 0 env OPENCHSM_SDF_ENDPOINT=127.0.0.1:$PV OPENCHSM_SDF_TOKEN_ID=tool-app OPENCHSM_SDF_TOKEN_SECRET_FILE="$IT_DIR/token.raw" "$CHSM_BIN/vsmtool" random --bytes 4
check "flags win over --config and the environment" \
  rc_is 0 env OPENCHSM_SDF_CONFIG=/nonexistent "$CHSM_BIN/vsmtool" --config /nonexistent --endpoint "127.0.0.1:$PV" --token-id tool-app --token-secret-file "$IT_DIR/token.b64" random --bytes 4
for u in "random" "random --bytes 0" "random --bytes 65537" "random 8" "keygen" "keygen --index 0" \
         "keygen --index 5 --usage kek" "kek-gen --index 5 --usage sign" "pubkey --index 1 --usage kek" \
         "delete --index 1 --usage other" "sign --index 2" "verify --index 1 --in x" \
         "verify --index 1 --pubkey p --in x --sig y" "encrypt --kek-index 4 --in x" \
         "encrypt --kek-index 4 --in x --out y --mode ctr" "hash --in x --id a" "frobnicate" \
         "key gen sign 1" "list --index 1" "info --bytes 3"; do
  # shellcheck disable=SC2086
  check "usage error: vsmtool $u → exit 2" rc_is 2 T $u
done
check "only two of the connection flags: exit 2" rc_is 2 "$CHSM_BIN/vsmtool" --endpoint "127.0.0.1:$PV" --token-id tool-app info
check "an unreadable input file: exit 2" rc_is 2 T hash --in "$IT_DIR/missing"
check "--help: exit 0" rc_is 0 T sign --help

# Failed authentications delay the next attempt from this address (1 s,
# then 2 s: docs/vsm-protocol.md), so they come last.
openssl rand -base64 32 > "$IT_DIR/wrong.b64"
check "a wrong token secret: exit 1" rc_is 1 vsm_tool "$PV" tool-app "$IT_DIR/wrong.b64" info
check "a wrong token secret: the authentication SDR" err_has "SDR_PARDENY (0x01000007)"
sleep 1.2
check "an unknown token ID: exit 1, SDR_PARDENY" eval 'rc_is 1 vsm_tool "$PV" nobody "$IT_DIR/token.b64" info && err_has SDR_PARDENY'

# ---- /metrics: the VSM's operations by algorithm ----
# The VSM process writes its statistics every second; sign once more (once
# the failed-AUTH delay has passed) and wait for the file to show every
# operation above.
check "sign after the checks" eventually 10 rc_is 0 T sign --index 3 --in "$IT_DIR/doc" --password-file "$IT_DIR/pw" && N_SIGN=$((N_SIGN + 1))
metric() { awk -v k="$1" '$1 == k { print $2 }' "$IT_DIR/metrics.txt"; }
fetch_metrics() { gmt_request GET $API/metrics; cp "$RESP_BODY" "$IT_DIR/metrics.txt"; }
signs_shown() { fetch_metrics; [ "$(metric 'chsm_vsm_ops_total{vsm="t1",alg="SM2",op="sign"}')" = "$N_SIGN" ]; }
check "metrics: SM2 sign count of t1 is $N_SIGN" eventually 10 signs_shown
check "metrics: signed answer" response_signature_ok "$LAST_NONCE"
check "metrics: SM2 verify count is $N_VERIFY" [ "$(metric 'chsm_vsm_ops_total{vsm="t1",alg="SM2",op="verify"}')" = "$N_VERIFY" ]
check "metrics: keygen count is $N_KEYGEN" [ "$(metric 'chsm_vsm_ops_total{vsm="t1",alg="none",op="keygen"}')" = "$N_KEYGEN" ]
# (the VSM service does not count SDF_GenerateRandom yet: only the series is checked)
check "metrics: random calls counted" [ "$(metric 'chsm_vsm_ops_total{vsm="t1",alg="none",op="random"}')" -ge 2 ]
check "metrics: SM4 encrypt counted (chunks)" [ "$(metric 'chsm_vsm_ops_total{vsm="t1",alg="SM4",op="encrypt"}')" -ge 5 ]
check "metrics: SM4 decrypt counted" [ "$(metric 'chsm_vsm_ops_total{vsm="t1",alg="SM4",op="decrypt"}')" -ge 5 ]
check "metrics: SM4 MAC counted" [ "$(metric 'chsm_vsm_ops_total{vsm="t1",alg="SM4",op="mac"}')" -ge 10 ]
check "metrics: a rate series per operation" \
  [ "$(grep -c '^chsm_vsm_ops_rate{vsm="t1",' "$IT_DIR/metrics.txt")" = "$(grep -c '^chsm_vsm_ops_total{vsm="t1",' "$IT_DIR/metrics.txt")" ]
check "metrics: the rate is a number" grep -Eq '^chsm_vsm_ops_rate\{vsm="t1",alg="SM2",op="sign"\} [0-9]+(\.[0-9]+)?$' "$IT_DIR/metrics.txt"
check "metrics: counter and gauge types" eval 'grep -qx "# TYPE chsm_vsm_ops_total counter" "$IT_DIR/metrics.txt" && grep -qx "# TYPE chsm_vsm_ops_rate gauge" "$IT_DIR/metrics.txt"'
check "metrics: no session open" [ "$(metric 'chsm_vsm_sessions{vsm="t1"}')" = 0 ]
gmt_request GET $API/vsms/t1/status
check "metrics: 7.3.2 shows the same sign count" [ "$(jq -r '.data.ops["sm2.sign"].count' "$RESP_BODY")" = "$N_SIGN" ]
task_ok "stop t1" POST $API/vsms/t1/stop
fetch_metrics
check "metrics: a stopped VSM has no operation series" [ "$(grep -c '^chsm_vsm_ops_total{vsm="t1",' "$IT_DIR/metrics.txt")" = 0 ]
check "metrics: a stopped VSM has 0 sessions" [ "$(metric 'chsm_vsm_sessions{vsm="t1"}')" = 0 ]
check "chsmd stops cleanly" chsm_stop
it_end
