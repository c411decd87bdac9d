#!/usr/bin/env bash
# bench/mgmt.sh: the management API under load (docs/PERFORMANCE.md,
# "Management API").
#
# One CHSM on loopback (tests/integration/lib.sh), a platform key enrolled.
# chsm-load runs, over 32 keep-alive TLS connections with pre-signed
# requests:
#   1. signed GET /chsm/status, closed loop, measuring in the same run the
#      crypto bound: cores / (one SM2 verify + one SM2 sign);
#   2. the mixed load status=60,vsm-get=20,token=10,create-delete=10, closed
#      loop;
#   3. GET /chsm/status open loop at 70 % of the crypto bound, for p99 at
#      that rate (latency counts from each request's planned start, so a
#      server slower than that rate shows its queue);
#   4. the unauthenticated GET /auth/platform-key/fingerprint (7.4.1),
#      closed loop: no signature to verify, the answer still signed;
#   5. the floor: the same status requests (chsm-load --not-chsm) to nginx
#      on loopback, one worker on chsmd's CPU, the same TLS (chsmd's own
#      certificate and key, chsmd's protocol versions, suites and groups),
#      keep-alive without a request limit, an access log line per request
#      to a file (as chsmd writes one), answering each with a static 200
#      whose body is a copy of chsmd's status answer in this run and whose
#      head is padded (a header) to that answer's head's length: what TLS
#      and HTTP over loopback TCP cost a server here, with no crypto and
#      no API. chsmd is stopped first.
# Each row: req/s, latency p50/p99, the service's CPU time per request
# (/proc/PID/stat; for the floor, the nginx worker's), and that over the
# crypto cost. Below the table: the 20 % allowance of issue #8 (0.2 x the
# crypto cost), the floor, and chsmd's CPU per status request minus the
# crypto cost.
#
# usage: CHSM_BIN=build/bin bench/mgmt.sh   (or bench/run.sh mgmt [BUILD_DIR])
# BENCH_SECONDS (default 10) sets the measured seconds of each run;
# BENCH_CHSMD_ARGS adds options to chsmd run (e.g. "--threads 4").
# On a machine with 2 CPUs or more, chsmd runs on the last CPU and chsm-load
# on the others (taskset), so that the client does not take the server's
# cores; the crypto bound counts the CPUs chsmd may use. BENCH_SERVER_CPUS
# and BENCH_CLIENT_CPUS (taskset lists) choose others; BENCH_PIN=0 pins
# nothing (both share every CPU, as before 2026-11-26 13:30 UTC).
# Prints the tables on stdout; the rest goes to $IT_DIR/bench.log.
set -uo pipefail
BENCH_NAME=mgmt
. "$(dirname "$0")/lib.sh"
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-32}

NCPU=$(nproc)
CLIENT_WRAP=()
if [ "${BENCH_PIN:-1}" != 0 ] && [ "$NCPU" -ge 2 ]; then
  SERVER_CPUS=${BENCH_SERVER_CPUS:-$((NCPU - 1))}
  CLIENT_CPUS=${BENCH_CLIENT_CPUS:-0}
  [ -n "${BENCH_CLIENT_CPUS:-}" ] || [ "$NCPU" -le 2 ] || CLIENT_CPUS=0-$((NCPU - 2))
  CHSMD_WRAP="taskset -c $SERVER_CPUS ${CHSMD_WRAP:-}"
  CLIENT_WRAP=(taskset -c "$CLIENT_CPUS")
  PINNING="chsmd on CPU $SERVER_CPUS, chsm-load on CPU $CLIENT_CPUS (taskset)"
else
  PINNING="not pinned: chsmd and chsm-load share the $NCPU CPUs"
fi

bench_quiet
chsm_init
# shellcheck disable=SC2086 # options, split on purpose
chsm_start ${BENCH_CHSMD_ARGS:-}
enroll_platform

# load NAME ARGS...: one chsm-load run into $IT_DIR/NAME.json, against
# chsmd, or LOAD_URL measuring LOAD_PID when set.
load() {
  local name=$1; shift
  "${CLIENT_WRAP[@]}" "$CHSM_BIN/chsm-load" --url "${LOAD_URL:-$BASE}" --key "$SIGN_KEY" \
    --ca "$CACERT" --connections "$CONNS" --duration "$SECONDS_PER_RUN" --warmup 2 \
    --server-pid "${LOAD_PID:-$(service_pid)}" --report-json "$IT_DIR/$name.json" "$@" ||
    die "chsm-load $name"
}
j() { jq -r "$2" "$IT_DIR/$1.json"; }
fmt() { awk -v v="$1" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, v }'; }

PRESIGN=$((SECONDS_PER_RUN * 4000 + 8000))
load status --mix status=100 --crypto-bound --presign "$PRESIGN"
BOUND=$(j status .crypto.boundReqPerSec)
CRYPTO_US=$(j status '.crypto.sm2SignUs + .crypto.sm2VerifyUs')
load mixed --mix status=60,vsm-get=20,token=10,create-delete=10 --presign "$PRESIGN"
RATE=$(awk -v b="$BOUND" 'BEGIN { printf "%.0f", b * 0.7 }')
load open --mix status=100 --rate "$RATE" --presign $((RATE * (SECONDS_PER_RUN + 2) + 1000))

# ---- the floor: nginx, same TLS, same client, static answer ----
# tls_of HOST:PORT: the protocol, suite, key exchange group and server key
# that openssl s_client (default offer, as chsm-load's: TLS 1.3 first,
# X25519 first) gets from that server.
tls_of() {
  openssl s_client -connect "$1" -CAfile "$CACERT" </dev/null 2>/dev/null | awk '
    /^New, / { sub(/,$/, "", $2); p = $2; c = $NF }
    /^Server Temp Key:/ { sub(/^Server Temp Key: /, ""); k = $0 }
    /^Server public key is/ { s = $5 " bit" }
    /^Peer signature type:/ { t = $4 }
    END { printf "%s %s, key exchange %s, server key %s %s", p, c, k, t, s }'
}
gmt_request GET /gmt0088/v1/chsm/status
[ "$RESP_STATUS" = 200 ] || die "GET /chsm/status: $RESP_STATUS"
STATUS_BYTES=$(wc -c < "$RESP_BODY")
STATUS_HEAD=$(wc -c < "$RESP_HEADERS")
# The answer's text, with the characters nginx's string would interpret
# replaced, so the body keeps its size.
FLOOR_BODY=$(tr "\\\\'\$" '___' < "$RESP_BODY")
CHSMD_TLS=$(tls_of "127.0.0.1:$PORT")
# chsmd's unauthenticated route (7.4.1): no verify, the answer still signed.
gmt_send GET /gmt0088/v1/auth/platform-key/fingerprint /dev/null
FP_BYTES=$(wc -c < "$RESP_BODY")
FP_SIGNED=no
grep -qi '^X-GMT-Device-Signature:' "$RESP_HEADERS" && FP_SIGNED=yes
load fingerprint --mix fingerprint=100 --presign "$PRESIGN"
chsm_stop
# floor_start [PAD]: nginx with the floor's server on FLOOR_PORT; PAD, a
# header's value, makes its answer's head as long as chsmd's.
floor_start() {
  FLOOR_PORT=$(free_port)
  NGINX_EXTRA_CONF="server {
    listen 127.0.0.1:$FLOOR_PORT ssl;
    ssl_certificate $CACERT; ssl_certificate_key $STATE/tls-key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_prefer_server_ciphers on;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
    ssl_ecdh_curve X25519:P-256:P-384;
    keepalive_requests 1000000000; keepalive_timeout 300s;
    access_log $IT_DIR/nginx/floor-access.log;
    default_type application/json;
    ${1:+add_header X-Pad '$1';}
    location / { return 200 '$FLOOR_BODY'; }
  }"
  nginx_start
  FLOOR_HEAD=$(curl -sS --cacert "$CACERT" -D - -o /dev/null "https://127.0.0.1:$FLOOR_PORT/" | wc -c)
}
floor_start
PAD=$((STATUS_HEAD - FLOOR_HEAD - 9)) # 9: "X-Pad: " and CRLF
if [ "$PAD" -gt 0 ]; then
  nginx_stop
  floor_start "$(printf "%${PAD}s" "" | tr ' ' x)"
fi
NGINX_WORKER=""
for _ in $(seq 1 100); do
  NGINX_WORKER=$(cat "/proc/$NGINX_PID/task/$NGINX_PID/children" 2>/dev/null | tr -d ' ')
  [ -n "$NGINX_WORKER" ] && break
  sleep 0.05
done
[ -n "$NGINX_WORKER" ] || die "no nginx worker"
if [ -n "${SERVER_CPUS:-}" ]; then
  taskset -a -p -c "$SERVER_CPUS" "$NGINX_PID" >/dev/null && taskset -a -p -c "$SERVER_CPUS" "$NGINX_WORKER" >/dev/null ||
    die "taskset nginx"
fi
NGINX_TLS=$(tls_of "127.0.0.1:$FLOOR_PORT")
LOAD_URL=https://127.0.0.1:$FLOOR_PORT LOAD_PID=$NGINX_WORKER \
  load floor --not-chsm --mix status=100 --presign $(((SECONDS_PER_RUN + 3) * 24000))
[ "$(wc -l < "$IT_DIR/nginx/floor-access.log")" -gt 0 ] || die "nginx logged nothing"
nginx_stop

row() {
  local name=$1 what=$2 cpu
  cpu=$(j "$name" .server.cpuUsPerRequest)
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$what" "$(fmt "$(j "$name" .reqPerSec)" 0)" \
    "$(fmt "$(j "$name" .latencyMs.p50)" 2)" "$(fmt "$(j "$name" .latencyMs.p99)" 2)" \
    "$(fmt "$cpu" 0)" "$(awk -v c="$cpu" -v k="$CRYPTO_US" 'BEGIN { printf "%.2f", c / k }')" \
    "$(j "$name" '[.httpStatus | to_entries[] | "\(.key): \(.value)"] | join(", ")')"
}

bench_loud
echo "Management API: chsm-load, $CONNS keep-alive TLS connections, ${SECONDS_PER_RUN} s per run after 2 s warm-up; $PINNING; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| crypto (this run, crypto module, one thread, CPU time) | value |"
echo "|---|---:|"
echo "| SM2 sign (µs) | $(fmt "$(j status .crypto.sm2SignUs)") |"
echo "| SM2 verify (µs) | $(fmt "$(j status .crypto.sm2VerifyUs)") |"
echo "| one verify + one sign (µs) | $(fmt "$CRYPTO_US") |"
echo "| crypto bound, $(j status .crypto.cores) cores (req/s) | $(fmt "$BOUND" 0) |"
echo
echo "| run | req/s | p50 (ms) | p99 (ms) | server CPU per request (µs) | CPU / crypto cost | HTTP statuses |"
echo "|---|---:|---:|---:|---:|---:|---|"
row status "GET /chsm/status, closed loop"
row mixed "mixed (status 60, vsm-get 20, token 10, create-delete 10), closed loop"
row open "GET /chsm/status, open loop at $RATE req/s (70 % of the bound)"
row fingerprint "chsmd: unauthenticated GET /auth/platform-key/fingerprint ($FP_BYTES bytes; answer signed: $FP_SIGNED), closed loop"
row floor "floor: nginx, static 200, body and head as long as chsmd's status answer ($STATUS_BYTES + $FLOOR_HEAD bytes), closed loop"
echo
ALLOW=$(awk -v k="$CRYPTO_US" 'BEGIN { print 0.2 * k }')
# beyond NAME CRYPTO_US: the server's CPU per request of run NAME minus that.
beyond() { awk -v c="$(j "$1" .server.cpuUsPerRequest)" -v k="$2" 'BEGIN { print c - k }'; }
echo "| issue #8, signed status (µs of server CPU per request) | value |"
echo "|---|---:|"
echo "| allowance beyond the crypto: 0.2 × crypto cost | $(fmt "$ALLOW") |"
echo "| floor: nginx worker, TLS + HTTP + access log, no crypto | $(fmt "$(j floor .server.cpuUsPerRequest)") |"
echo "| chsmd beyond the crypto: closed-loop status − crypto cost | $(fmt "$(beyond status "$CRYPTO_US")") |"
FP_CRYPTO=0
[ "$FP_SIGNED" = no ] || FP_CRYPTO=$(j status .crypto.sm2SignUs)
echo "| chsmd beyond the crypto: fingerprint − $( [ "$FP_SIGNED" = no ] && echo "0 (unsigned)" || echo "one SM2 sign") | $(fmt "$(beyond fingerprint "$FP_CRYPTO")") |"
echo
echo "(TLS, openssl s_client: chsmd $CHSMD_TLS; nginx $NGINX_TLS."
echo " Answer heads: chsmd $STATUS_HEAD bytes, nginx $FLOOR_HEAD bytes (a padding header). In the floor run the nginx worker was busy"
echo " $(awk -v r="$(j floor .reqPerSec)" -v c="$(j floor .server.cpuUsPerRequest)" 'BEGIN { printf "%.0f", r * c / 1e4 }') % of one CPU, chsm-load used $(awk -v c="$(j floor .clientCpuSeconds)" -v n="$(j floor .requests)" 'BEGIN { printf "%.0f", c * 1e6 / n }') µs of CPU per request, on CPU ${CLIENT_CPUS:-any}.)"
echo
echo "(server CPU: user + system time of the chsmd service process (the floor: the nginx worker) over the measured"
echo " requests; RSS of chsmd after warm-up and at the end of the mixed run:"
echo " $(j mixed .server.rssKibStart) KiB, $(j mixed .server.rssKibEnd) KiB)"
