#!/usr/bin/env bash
# A full disk during a VSM image import (7.3.6; issue #5): the importing
# CHSM's state folder is a small tmpfs that the test fills, leaving 0 KiB to
# a few MiB free, and an image of a VSM with keys is imported each time into
# a new empty VSM. Wherever the space runs out (downloading the image,
# writing the keys, committing), the import either succeeds completely or
# fails and leaves the target exactly as it was; chsmd keeps answering, and
# once space is back an import succeeds.
#
# Needs to mount a tmpfs: the script re-runs itself in a private mount
# namespace (as root, or as an unprivileged user through a user namespace),
# so the mount disappears with the test's processes.
if [ -z "${FULLFS_NS:-}" ]; then
  if [ "$(id -u)" = 0 ]; then
    FULLFS_NS=1 exec unshare -m -- bash "$0" "$@"
  else
    FULLFS_NS=1 exec unshare -rm -- bash "$0" "$@"
  fi
fi
. "$(dirname "$0")/lib.sh"
it_begin images_fullfs
F=/gmt0088/v1

# Every chsmd stops before B's tmpfs is unmounted, then it_cleanup runs.
fullfs_cleanup() {
  chsm_stop_all
  umount "$IT_DIR/B" 2>/dev/null || umount -l "$IT_DIR/B" 2>/dev/null
  it_cleanup
}
trap fullfs_cleanup EXIT
printf 'the-fullfs-domain-secret\n' > "$IT_DIR/domain"

# ---- A: the source, on the ordinary disk ----
STATE=$IT_DIR/A CHSMD_LOG=$IT_DIR/A.log
chsm_init --domain-name dom-fullfs --domain-secret-file "$IT_DIR/domain"
chsm_start
enroll_platform
mkdir -p "$IT_DIR/up"
gmt_request PUT $F/chsm/image-upload-address "{\"url\":\"file://$IT_DIR/up/\"}"
expect "A: 7.2.6 file://" 0 200
openssl rand -base64 24 | tr -d '\n' > "$IT_DIR/src.b64"
PS=$(free_port)
task_ok "A: create src" POST $F/vsms \
  "{\"vsmId\":\"src\",\"name\":\"src\",\"network\":$(vsm_net 127.0.0.1 "$PS"),\"token\":{\"tokenId\":\"src-app\",\"secret\":\"$(cat "$IT_DIR/src.b64")\"},\"start\":true}"
NKEYS=24
made=0
for i in $(seq 1 $NKEYS); do
  vsm_tool "$PS" src-app "$IT_DIR/src.b64" keygen --index "$i" >/dev/null && made=$((made + 1))
done
check "A: $NKEYS keys made through the VSM service" [ "$made" = $NKEYS ]
gmt_request GET $F/vsms/src/status
SRC_DIGEST=$(resp_data .stateDigest)
task_ok "A: 7.3.5 export src" POST $F/vsms/src/image/export '{}'
DL="{\"url\":\"$(resp_data .result.url)\",\"sm3\":\"$(resp_data .result.sm3)\"}"
chsm_save A

# ---- B: the target, its whole state folder on an 8 MiB tmpfs ----
mkdir -p "$IT_DIR/B"
mount -t tmpfs -o size=8m,mode=0700 tmpfs "$IT_DIR/B" || fail_now "cannot mount a tmpfs"
STATE=$IT_DIR/B CHSMD_LOG=$IT_DIR/B.log
chsm_init --domain-name dom-fullfs --domain-secret-file "$IT_DIR/domain"
chsm_start
GMT_HMAC_CODE=$ENROLL_CODE gmt_request PUT $F/auth/platform-key \
  "{\"publicKey\":$(jq -Rs . < "$IT_DIR/platform.pub.pem")}"
expect "B: platform key enrolled" 0 200

# details ID: "state keyCount stateVersion tokenConfigured stateDigest".
details() {
  gmt_request GET "$F/vsms/$1"
  local d="$(resp_data .state) $(resp_data .keyCount) $(resp_data .stateVersion) $(resp_data .token.configured)"
  gmt_request GET "$F/vsms/$1/status"
  echo "$d $(resp_data .stateDigest)"
}
# fill KIB: leaves about KIB KiB free on B's tmpfs.
fill() {
  rm -f "$IT_DIR/B/filler"
  local avail
  avail=$(df --output=avail -B1K "$IT_DIR/B" | tail -n 1 | tr -d ' ')
  [ "$avail" -gt "$1" ] && fallocate -l $(( (avail - $1) * 1024 )) "$IT_DIR/B/filler"
  return 0
}
# settled TASKID VSM: chsmd logged the task's end, or that it waits for the
# store to accept the task's start or end or the VSM's final state (the log
# is not on the tmpfs). Then the test gives the space back, as an operator
# would; a task that could not even start then runs with the space.
settled() {
  grep -q "event=task.end task=$1 " "$CHSMD_LOG" ||
    grep -q "event=store.retry task=$1 " "$CHSMD_LOG" ||
    grep -q "event=store.retry vsm=$2 " "$CHSMD_LOG"
}

OK=0 FAILED=0 REFUSED=0 i=0
for free in 0 8 24 48 96 160 256 384 640 1024 2048; do
  i=$((i + 1))
  PD=$(free_port)
  task_ok "B: create empty d$i" POST $F/vsms "{\"vsmId\":\"d$i\",\"name\":\"d$i\",\"network\":$(vsm_net 127.0.0.1 "$PD")}"
  before=$(details "d$i")
  fill "$free"
  gmt_request POST "$F/vsms/d$i/image/import" "$DL"
  code=${RESP_CODE:-?} tid=""
  [ "$code" = 0 ] && tid=$(resp_data .taskId)
  [ -z "$tid" ] || eventually 120 settled "$tid" "d$i"
  rm -f "$IT_DIR/B/filler"
  if [ -z "$tid" ]; then
    REFUSED=$((REFUSED + 1))
    check "$free KiB free: refused with 5001 (got $code)" [ "$code" = 5001 ]
    check "$free KiB free: d$i unchanged" [ "$(details "d$i")" = "$before" ]
    continue
  fi
  check "$free KiB free: the task ended" wait_task "$tid"
  if [ "${TASK_STATE:-}" = succeeded ]; then
    OK=$((OK + 1))
    after=$(details "d$i")
    check "$free KiB free: imported completely ($after)" \
      [ "$after" = "stopped $NKEYS $(echo "$after" | cut -d' ' -f3) true $SRC_DIGEST" ]
  else
    FAILED=$((FAILED + 1))
    check "$free KiB free: the import failed with a storage or download code (got ${TASK_STATE:-?} ${TASK_CODE:-?})" \
      eval '[ "${TASK_STATE:-}" = failed ] && { [ "${TASK_CODE:-}" = 5001 ] || [ "${TASK_CODE:-}" = 4005 ]; }'
    check "$free KiB free: d$i exactly as before" [ "$(details "d$i")" = "$before" ]
  fi
  gmt_request GET $F/chsm/status
  expect "$free KiB free: chsmd still answers" 0 200
done
echo "# imports: $OK succeeded, $FAILED failed, $REFUSED refused at the request"
check "some imports ran out of space in the task" [ "$FAILED" -ge 1 ]

# ---- space back: an import succeeds, and no temporary file is left ----
rm -f "$IT_DIR/B/filler"
PD=$(free_port)
task_ok "B: create empty last" POST $F/vsms "{\"vsmId\":\"last\",\"name\":\"last\",\"network\":$(vsm_net 127.0.0.1 "$PD")}"
task_ok "B: import with space" POST $F/vsms/last/image/import "$DL"
check "B: last holds the source's keys and token" [ "$(details last | cut -d' ' -f2,4,5)" = "$NKEYS true $SRC_DIGEST" ]
check "B: no temporary image left" eval '[ -z "$(ls -A "$IT_DIR/B/tmp" 2>/dev/null)" ]'
task_ok "B: start last" POST $F/vsms/last/start
head -c 64 /dev/urandom > "$IT_DIR/msg"
vsm_tool "$PS" src-app "$IT_DIR/src.b64" pubkey --index 1 > "$IT_DIR/k1.pem"
check "B: the imported key signs; openssl verifies with src's public key" eval \
  'vsm_tool "$PD" src-app "$IT_DIR/src.b64" sign --index 1 --in "$IT_DIR/msg" | base64 -d > "$IT_DIR/sig" &&
   openssl dgst -sm3 -verify "$IT_DIR/k1.pem" -sigopt distid:$DISTID -signature "$IT_DIR/sig" "$IT_DIR/msg" >/dev/null'
it_end
