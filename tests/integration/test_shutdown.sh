#!/usr/bin/env bash
# chsmd stopped with SIGTERM while connections are open in every state
# (issue #7): TCP only, a partial ClientHello, the server mid-handshake,
# TLS idle, half a request head, an answered keep-alive connection, and
# pipelines that keep it writing answers (hostile.py stop). chsmd exits 0,
# closes every one of them, and frees each: the ASan stage (LeakSanitizer)
# and the memcheck run (valgrind_test_shutdown) fail on any leak, such as
# a TLS bufferevent still referenced by a deferred callback of its loop
# when the loop ends right after a write (docs/http.md, "Stopping").
# Three rounds: the pipelines make that moment likely, not certain.
. "$(dirname "$0")/lib.sh"
it_begin shutdown
H="$(cd "$(dirname "$0")" && pwd)/hostile.py"
chsm_init
for round in 1 2 3; do
  chsm_start
  rel=$IT_DIR/release.$round out=$IT_DIR/stop.$round
  # The connections must still be open at the stop: well within the
  # server's 30 s request deadline (CHSM_CONN_TIMEOUT_SECONDS).
  python3 "$H" stop 127.0.0.1 "$PORT" "$CACERT" --n 4 --release "$rel" --max-secs 120 > "$out" 2>&1 &
  client=$!
  eventually 20 test -s "$rel"
  check "round $round: every connection open, each pipeline answered ($(cat "$rel" 2>/dev/null))" \
    grep -qx 'open=10' "$rel"
  rc=0; chsm_stop || rc=$?
  check "round $round: chsmd stopped by SIGTERM exits 0 ($rc)" [ "$rc" = 0 ]
  wait "$client"
  check "round $round: chsmd closed all 10 connections ($(head -n 3 "$out" | tr '\n' ' '))" \
    grep -q 'closed=10 of 10$' "$out"
done
it_end
