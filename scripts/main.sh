#!/usr/bin/env bash
# The main job: installs what is needed, builds, and runs a CHSM on loopback
# under ./var/ with an enrolled platform key and a running VSM, then prints
# its status. The CHSM keeps running; `scripts/main.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VAR=$ROOT/var
STATE=$VAR/chsm
PORT=${CHSM_PORT:-8443}
BIN=$ROOT/${BUILD_DIR:-build}/bin

stop_chsmd() {
  if [ -f "$VAR/chsmd.pid" ] && kill -0 "$(cat "$VAR/chsmd.pid")" 2>/dev/null; then
    kill -TERM "$(cat "$VAR/chsmd.pid")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$VAR/chsmd.pid")" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$VAR/chsmd.pid"
}

if [ "${1:-}" = stop ]; then stop_chsmd; echo "chsmd stopped"; exit 0; fi

scripts/install-deps.sh
scripts/build.sh
mkdir -p "$VAR" && chmod 700 "$VAR"
stop_chsmd

code=""
if [ ! -f "$STATE/chsm.db" ]; then
  echo "== initialising a CHSM in $STATE"
  init_out=$("$BIN/chsmd" init --state-dir "$STATE" --max-vsms 16)
  printf '%s\n' "$init_out" | grep -v '^enrollment-code:'
  code=$(printf '%s\n' "$init_out" | sed -n 's/^enrollment-code: //p')
  printf '%s\n' "$init_out" | sed -n 's/^device-key-fingerprint: //p' > "$VAR/device-fingerprint"
fi
if [ ! -f "$VAR/platform.pem" ]; then
  echo "== making the platform key"
  "$BIN/chsmctl" keygen --out "$VAR/platform.pem"
fi

start_chsmd() {
  : > "$VAR/chsmd.log"
  nohup "$BIN/chsmd" run --state-dir "$STATE" --listen "127.0.0.1:$PORT" >>"$VAR/chsmd.log" 2>&1 &
  echo $! > "$VAR/chsmd.pid"
  for _ in $(seq 1 100); do
    grep -q 'event=started' "$VAR/chsmd.log" && return 0
    kill -0 "$(cat "$VAR/chsmd.pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "chsmd did not start; its log:" >&2; cat "$VAR/chsmd.log" >&2; exit 1
}
echo "== starting chsmd on 127.0.0.1:$PORT (log: var/chsmd.log)"
start_chsmd

export CHSMCTL_URL="https://127.0.0.1:$PORT"
export CHSMCTL_KEY="$VAR/platform.pem"
export CHSMCTL_CACERT="$STATE/tls-cert.pem"
export CHSMCTL_DEVICE_FINGERPRINT="$(cat "$VAR/device-fingerprint")"
ctl() { "$BIN/chsmctl" "$@"; }

if ! ctl fingerprint | grep -q '"configured": true'; then
  if [ -z "$code" ]; then
    echo "== issuing a new enrollment code (local administrator)"
    stop_chsmd
    code=$("$BIN/chsmd" admin reset-platform-key --state-dir "$STATE" | sed -n 's/^enrollment-code: //p')
    start_chsmd
  fi
  echo "== enrolling the platform key"
  ctl enroll --enrollment-code "$code" >/dev/null
fi
unset code

if ! ctl vsm info demo >/dev/null 2>&1; then
  echo "== creating and starting VSM 'demo' on 127.0.0.1:19001"
  (umask 077; head -c 32 /dev/urandom | base64 > "$VAR/demo-token.secret")
  ctl --wait vsm create --id demo --name "demo tenant" --ip 127.0.0.1 --prefix 32 --port 19001 \
      --token-id demo-token --token-secret-file "$VAR/demo-token.secret" --start >/dev/null
elif ! ctl vsm info demo | grep -q '"state": "running"'; then
  echo "== starting VSM 'demo'"
  ctl --wait vsm start demo >/dev/null
fi

echo "== chsmctl chsm status-all"
ctl chsm status-all
echo
echo "chsmd keeps running (pid $(cat "$VAR/chsmd.pid")); stop it with: scripts/main.sh stop"
