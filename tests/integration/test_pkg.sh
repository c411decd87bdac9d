#!/usr/bin/env bash
# chsm-pkg (docs/packages.md) end to end: vendor keys made by the openssl
# CLI; the project's own chsmd and chsm-vsmd packaged at 9.9.9, verified,
# extracted and compared byte for byte; chsm-image inspect accepts the
# package with the vendor key; the vendor-key.pem that `chsmd init
# --vendor-key` keeps in the state folder verifies it; the exit statuses
# and codes for another key, a changed byte, bad versions and unsafe names.
. "$(dirname "$0")/lib.sh"
it_begin pkg
P=$CHSM_BIN/chsm-pkg
W=$IT_DIR
openssl genpkey -algorithm SM2 -out "$W/vendor.pem" 2>/dev/null || fail_now "openssl SM2 key"
openssl pkey -in "$W/vendor.pem" -pubout -out "$W/vendor.pub" 2>/dev/null || fail_now "openssl pub"
openssl genpkey -algorithm SM2 -out "$W/other.pem" 2>/dev/null || fail_now "openssl SM2 key 2"
openssl pkey -in "$W/other.pem" -pubout -out "$W/other.pub" 2>/dev/null || fail_now "openssl pub 2"

# rc_is WANT COMMAND...: exits with WANT; stdout in $W/out, stderr in $W/err.
rc_is() {
  local want=$1 rc=0; shift
  "$@" >"$W/out" 2>"$W/err" || rc=$?
  [ "$rc" = "$want" ] || { echo "# exit $rc, wanted $want: $(head -c 300 "$W/out" "$W/err")"; return 1; }
}
out_has() { grep -q -- "$1" "$W/out"; }

check "build 9.9.9 of chsmd and chsm-vsmd" rc_is 0 "$P" build --component chsm --version 9.9.9 \
  --key "$W/vendor.pem" "$CHSM_BIN/chsmd" "$CHSM_BIN/chsm-vsmd" -o "$W/up.pkg"
check "no temporary file left" test ! -e "$W/up.pkg.tmp"
check "verify: valid" rc_is 0 "$P" verify --key "$W/vendor.pub" "$W/up.pkg"
check "verify prints the component" out_has "^component: chsm$"
check "verify prints the version" out_has "^version: 9.9.9$"
check "verify lists chsmd executable with its SM3" \
  out_has "0755 .*$("$CHSM_BIN/chsm-image" sm3 "$CHSM_BIN/chsmd") chsmd$"
check "verify lists chsm-vsmd" out_has " chsm-vsmd$"
mkdir "$W/x"
check "extract" rc_is 0 "$P" extract --key "$W/vendor.pub" "$W/up.pkg" -C "$W/x"
check "chsmd extracted byte for byte" cmp "$CHSM_BIN/chsmd" "$W/x/chsmd"
check "chsm-vsmd extracted byte for byte" cmp "$CHSM_BIN/chsm-vsmd" "$W/x/chsm-vsmd"
check "chsmd extracted 0755" test "$(stat -c %a "$W/x/chsmd")" = 755
check "the extracted chsmd runs" "$W/x/chsmd" --version
check "extract into a folder that is not empty: 1" \
  rc_is 1 "$P" extract --key "$W/vendor.pub" "$W/up.pkg" -C "$W/x"

# chsm-image (the container tool) accepts it with the vendor key.
check "chsm-image inspect --vendor-key" rc_is 0 "$CHSM_BIN/chsm-image" inspect \
  --vendor-key "$W/vendor.pub" "$W/up.pkg"
check "chsm-image: signature valid" out_has "^signature: valid"

# The vendor key a CHSM keeps from `chsmd init --vendor-key`.
chsm_init --vendor-key "$W/vendor.pub"
check "state has vendor-key.pem" test -f "$STATE/vendor-key.pem"
check "the state's vendor key verifies the package" \
  rc_is 0 "$P" verify --key "$STATE/vendor-key.pem" "$W/up.pkg"

# Refusals, with their codes.
check "another vendor key: 1 (4001)" rc_is 1 "$P" verify --key "$W/other.pub" "$W/up.pkg"
check "  reason 4001" out_has "invalid (4001"
cp "$W/up.pkg" "$W/bad.pkg"
size=$(stat -c %s "$W/bad.pkg")
printf '\x5a' | dd of="$W/bad.pkg" bs=1 seek=$((size / 2)) conv=notrunc status=none
check "a changed byte: 1 (4001)" rc_is 1 "$P" verify --key "$W/vendor.pub" "$W/bad.pkg"
check "  reason 4001" out_has "invalid (4001"
mkdir "$W/y"
check "extract of a changed package: 1" rc_is 1 "$P" extract --key "$W/vendor.pub" "$W/bad.pkg" -C "$W/y"
check "  nothing written" test -z "$(ls -A "$W/y")"
check "not a container: 1 (4003)" rc_is 1 "$P" verify --key "$W/vendor.pub" "$CHSM_BIN/chsmd"
check "  reason 4003" out_has "invalid (4003"
check "a private key where the public one is wanted is usage (2)" \
  rc_is 2 "$P" verify --key "$W/vendor.pem" "$W/up.pkg"
for v in 9.9 9.9.9.9 09.9.9 1000000.0.0 v1.0.0; do
  check "version $v refused (2)" rc_is 2 "$P" build --component chsm --version "$v" \
    --key "$W/vendor.pem" "$CHSM_BIN/chsmd" -o "$W/v.pkg"
done
check "component other than chsm|vsm refused (2)" rc_is 2 "$P" build --component hsm \
  --version 1.0.0 --key "$W/vendor.pem" "$CHSM_BIN/chsmd" -o "$W/v.pkg"
check "duplicate base names refused (1)" rc_is 1 "$P" build --component vsm --version 1.0.0 \
  --key "$W/vendor.pem" "$CHSM_BIN/chsmd" "$W/x/chsmd" -o "$W/v.pkg"
check "  reason 4006" grep -q "4006" "$W/err"
check "  no package and no temporary file" test ! -e "$W/v.pkg" -a ! -e "$W/v.pkg.tmp"
check "a folder is not a file (1)" rc_is 1 "$P" build --component vsm --version 1.0.0 \
  --key "$W/vendor.pem" "$W/x" -o "$W/v.pkg"
check "a file outside --name-prefix (2)" rc_is 2 "$P" build --component vsm --version 1.0.0 \
  --key "$W/vendor.pem" --name-prefix "$W/x" "$CHSM_BIN/chsmd" -o "$W/v.pkg"
mkdir -p "$W/tree/bin"
cp "$CHSM_BIN/chsm-vsmd" "$W/tree/bin/"
check "--name-prefix keeps relative names" rc_is 0 "$P" build --component vsm --version 0.1.0 \
  --key "$W/vendor.pem" --name-prefix "$W/tree" "$W/tree/bin/chsm-vsmd" -o "$W/t.pkg"
mkdir "$W/z"
check "extract a nested name" rc_is 0 "$P" extract --key "$W/vendor.pub" "$W/t.pkg" -C "$W/z"
check "  bin/chsm-vsmd byte for byte" cmp "$CHSM_BIN/chsm-vsmd" "$W/z/bin/chsm-vsmd"
check "usage errors are 2" rc_is 2 "$P" verify "$W/up.pkg"
it_end
