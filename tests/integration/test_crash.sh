#!/usr/bin/env bash
# Crash consistency (issue #7; PROFILE.md §7, §11): chsmd is killed with
# SIGKILL at random moments during hundreds of mixed mutating requests
# (create, start, stop, token, export, import, reset, delete, and key
# generation in the VSMs through the VSM protocol), restarted each time,
# and checked against a model of what was answered (crash_driver.py says
# exactly what is checked): every answered change is there, the request in
# flight at the kill happened or not and nothing in between, no VSM is left
# in a transitional state, no task stays running, no key or token outlives
# its VSM, images are complete or absent, and every key still signs
# (openssl verifies against the public key answered before the crash).
# Then a VSM process is killed (SIGKILL) during key generation: the VSM
# goes to fault with lastError, starts again by request, and every key
# whose generation was answered signs; none is half-written.
#
# Random choices come from a seed, printed; CRASH_SEED=N replays a run (the
# kills land on the same request of each round, give or take the timing).
# CRASH_MIN_REQUESTS (default 300) sets how many mutating requests the
# rounds add up to, CRASH_VSMD_KILLS (default 6) how often the VSM process
# is killed. Under Valgrind memcheck (CHSM_VALGRIND=1, valgrind_test_crash)
# every restart takes many seconds, so the defaults there are 30 and 2:
# memcheck looks for memory errors and leaks across kills and restarts,
# which a few rounds show; the plain and ASan stages keep the full counts.
. "$(dirname "$0")/lib.sh"
it_begin crash
API=/gmt0088/v1
HERE=$(cd "$(dirname "$0")" && pwd)
SEED=${CRASH_SEED:-$(od -An -tu4 -N4 /dev/urandom | tr -d ' ')}
if [ "${CHSM_VALGRIND:-0}" = 1 ]; then
  MIN_REQUESTS=${CRASH_MIN_REQUESTS:-30} VSMD_KILLS=${CRASH_VSMD_KILLS:-2}
else
  MIN_REQUESTS=${CRASH_MIN_REQUESTS:-300} VSMD_KILLS=${CRASH_VSMD_KILLS:-6}
fi
echo "# seed $SEED (replay with CRASH_SEED=$SEED)"

drv() { python3 "$HERE/crash_driver.py" "$@"; }
conn() { printf '%s\n' --base "$BASE" --cacert "$CACERT" --key "$SIGN_KEY" --key-id "$SIGN_KEY_ID"; }
# driver_checks COMMAND...: runs a driver command that prints "ok - " and
# "not ok - " lines and counts them; a non-zero exit without a "not ok"
# line (a crash of the driver) counts as one failure.
driver_checks() {
  local out rc=0 p f
  out=$("$@" 2>&1) || rc=$?
  printf '%s\n' "$out"
  p=$(grep -c '^ok - ' <<<"$out"); f=$(grep -c '^not ok - ' <<<"$out")
  IT_PASS=$((IT_PASS + p)); IT_FAIL=$((IT_FAIL + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    IT_FAIL=$((IT_FAIL + 1)); echo "not ok - $2 exited with status $rc"
  fi
}
# wait_for FILE PID: until FILE exists or PID has ended (bounded: 120 s).
wait_for() {
  for _ in $(seq 1 12000); do
    [ -e "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || return 0
    sleep 0.01
  done
  return 1
}
# vsmds_gone: no chsm-vsmd of this CHSM is left (they end with chsmd by
# the parent-death signal; a real crash takes them all before a restart).
vsmds_gone() { ! pgrep -f -- "--db $STATE/chsm.db" >/dev/null; }

chsm_init --max-vsms 8
chsm_start
enroll_platform
UPLOAD=$IT_DIR/up
mkdir -p "$UPLOAD"
gmt_request PUT $API/chsm/image-upload-address "{\"url\":\"file://$UPLOAD/\"}"
expect "image upload address file://$UPLOAD/" 0 200

# ---- (1) chsmd killed at random moments ----
PORTS=$(for _ in 1 2 3 4 5 6; do free_port; done | paste -sd,)
MODEL=$IT_DIR/model.json
drv init "$MODEL" --seed "$SEED" --ports "$PORTS" --upload "$UPLOAD"
drv plan "$MODEL" --min-requests "$MIN_REQUESTS" > "$IT_DIR/plan"
echo "# $(wc -l < "$IT_DIR/plan") rounds; each: requests until the K-th mutating one, a pause, SIGKILL, restart, check"
ROUND=0
T0=$(date +%s)
while read -r KILL_AFTER DELAY_MS; do
  ROUND=$((ROUND + 1))
  rm -f "$IT_DIR/marker"
  # shellcheck disable=SC2046
  drv run "$MODEL" $(conn) --round "$ROUND" --kill-after "$KILL_AFTER" --marker "$IT_DIR/marker" --state-dir "$STATE" \
    > "$IT_DIR/run.out" 2>&1 &
  DRV=$!
  wait_for "$IT_DIR/marker" "$DRV" || fail_now "round $ROUND: the driver never reached request $KILL_AFTER"
  [ "$DELAY_MS" -eq 0 ] || sleep "$(printf '0.%03d' "$DELAY_MS")"
  chsm_kill
  rc=0; wait "$DRV" || rc=$?
  [ "$rc" -eq 0 ] || { cat "$IT_DIR/run.out"; fail_now "round $ROUND: the driver failed ($rc)"; }
  eventually 20 vsmds_gone || fail_now "round $ROUND: VSM processes outlived chsmd"
  chsm_start
  # shellcheck disable=SC2046
  driver_checks drv check "$MODEL" $(conn) --state-dir "$STATE" --chsm-image "$CHSM_BIN/chsm-image"
done < "$IT_DIR/plan"
# shellcheck disable=SC2046
driver_checks drv final "$MODEL" $(conn)
drv stats "$MODEL" | tee "$IT_DIR/stats"
echo "# $ROUND rounds in $(( $(date +%s) - T0 )) s"
MUTATING=$(sed -n 's/^MUTATING=//p' "$IT_DIR/stats")
check "at least $MIN_REQUESTS mutating requests were sent across the kills ($MUTATING)" \
  [ "${MUTATING:-0}" -ge "$MIN_REQUESTS" ]

# ---- (2) a VSM process killed during key generation ----
openssl rand -base64 32 | tr -d '\n' > "$IT_DIR/k.b64"
PK=$(free_port)
task_ok "create k (started)" POST $API/vsms "{\"vsmId\":\"k\",\"name\":\"K\",\"network\":$(vsm_net 127.0.0.1 "$PK"),
  \"token\":{\"tokenId\":\"k-app\",\"secret\":\"$(cat "$IT_DIR/k.b64")\"},\"resources\":{\"maxKeys\":10000},\"start\":true}"
KLOG=$IT_DIR/keygen.log
: > "$KLOG"
kopts=(--port "$PK" --token-id k-app --token-file "$IT_DIR/k.b64")
FIRST=1
for i in $(seq 1 "$VSMD_KILLS"); do
  read -r KILL_AFTER DELAY_MS < <(python3 -c "import random; r = random.Random('vsmd:$SEED:$i'); print(r.randint(0, 40), r.choice([0, 0, 1, 2, 4, 8, 15]))")
  rm -f "$IT_DIR/marker"
  VP=$(vsm_pid k)
  [ -n "$VP" ] || fail_now "kill $i: k has no process"
  drv vsmd-loop "$KLOG" "${kopts[@]}" --first "$FIRST" --kill-after "$KILL_AFTER" --marker "$IT_DIR/marker" &
  LOOP=$!
  wait_for "$IT_DIR/marker" "$LOOP" || fail_now "kill $i: the key loop never reached key $KILL_AFTER"
  [ "$DELAY_MS" -eq 0 ] || sleep "$(printf '0.%03d' "$DELAY_MS")"
  kill -KILL "$VP"
  rc=0; wait "$LOOP" || rc=$?
  check "kill $i: the key loop stopped at the kill (status $rc)" [ "$rc" -eq 0 ]
  check "kill $i: k is in fault" eventually 10 vsm_state_is k fault
  gmt_request GET $API/vsms/k/status
  check "kill $i: lastError says how it died ($(resp_data .lastError))" \
    jqt "$RESP_BODY" '.data.lastError | test("killed by signal 9")'
  task_ok "kill $i: k starts again by request" POST $API/vsms/k/start
  driver_checks drv vsmd-check "$KLOG" "${kopts[@]}" --first "$FIRST"
  FIRST=$(( $(awk '{print $2}' "$KLOG" | sort -n | tail -n 1) + 1 ))
done
echo "# $(grep -c '^made ' "$KLOG") keys answered across $VSMD_KILLS kills of the VSM process"
it_end
