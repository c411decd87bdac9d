#!/usr/bin/env bash
# chsmd run --vsm-cpus (docs/operations.md, docs/vsm.md): a bad list is
# refused before anything starts (exit 2, with the reason); a VSM started
# by a chsmd given a list runs, with every one of its threads, on exactly
# those CPUs (/proc/PID/status Cpus_allowed_list), while chsmd keeps its own.
. "$(dirname "$0")/lib.sh"
it_begin vsm_cpus
API=/gmt0088/v1
chsm_init

# ---- bad lists: refused at start, with the reason ----
# refused LIST WHAT: `chsmd run --vsm-cpus LIST` exits 2 and says WHAT.
refused() {
  local rc=0
  "$CHSM_BIN/chsmd" run --state-dir "$STATE" --listen 127.0.0.1:0 --vsm-cpus "$1" \
    >"$IT_DIR/out" 2>&1 || rc=$?
  [ "$rc" = 2 ] && grep -qF -- "$2" "$IT_DIR/out" || { echo "# exit $rc: $(head -c 300 "$IT_DIR/out")"; return 1; }
}
NCPU=$(nproc)
check "empty list refused" refused "" "empty CPU list"
check "letters refused" refused "a" "invalid CPU list"
check "a reversed range refused" refused "1-0" "invalid CPU list"
check "a trailing comma refused" refused "0," "invalid CPU list"
check "a sign refused" refused "+0" "invalid CPU list"
check "a CPU beyond 1023 refused" refused "1024" "invalid CPU list"
check "a CPU this machine lacks refused" refused "$NCPU" "CPU $NCPU in \"$NCPU\" is not one this process may run on"

# ---- a VSM pinned to the last CPU ----
LAST=$((NCPU - 1))
chsm_start --vsm-cpus "$LAST"
enroll_platform
PV=$(free_port)
task_ok "create c1 (started)" POST $API/vsms "{\"vsmId\":\"c1\",\"name\":\"cpus\",\"network\":$(vsm_net 127.0.0.1 "$PV"),\"start\":true}"
check "c1 listens" eventually 10 listening 127.0.0.1 "$PV"
VP=$(vsm_pid c1)
check "c1 has a process" [ -n "$VP" ]
allowed() { sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$1"; }
check "chsm-vsmd runs on CPU $LAST only" [ "$(allowed /proc/"$VP"/status)" = "$LAST" ]
# every thread, the service's workers included
bad_threads=0
for t in /proc/"$VP"/task/*/status; do [ "$(allowed "$t")" = "$LAST" ] || bad_threads=$((bad_threads + 1)); done
check "every chsm-vsmd thread runs on CPU $LAST" [ "$bad_threads" = 0 ]
check "chsmd keeps its own CPUs" [ "$(allowed /proc/"$(service_pid)"/status)" = "$(allowed /proc/self/status)" ]
# a restart keeps the pinning
task_ok "stop c1" POST $API/vsms/c1/stop
task_ok "start c1" POST $API/vsms/c1/start
VP=$(vsm_pid c1)
check "restarted c1 runs on CPU $LAST only" [ -n "$VP" -a "$(allowed /proc/"${VP:-0}"/status 2>/dev/null)" = "$LAST" ]
check "chsmd stops cleanly" chsm_stop
it_end
