#!/usr/bin/env bash
# run_one.sh HARNESS SECONDS|replay WORKDIR CORPUS...: runs one harness.
#
# SECONDS: libFuzzer for that long (or until the first finding), new
# inputs into WORKDIR/corpus, findings (crash-*, leak-*, timeout-*) into
# WORKDIR/crashes, over WORKDIR/corpus and each CORPUS folder that exists.
# replay: the replay build (replay_main.c) runs each input of the CORPUS
# folders once. Exits non-zero on a finding.
set -euo pipefail
harness=$1 mode=$2 work=$3
shift 3
dirs=()
for d in "$@"; do [ -d "$d" ] && dirs+=("$d"); done
if [ "$mode" = replay ]; then
  exec "$harness" "${dirs[@]}"
fi
mkdir -p "$work/corpus" "$work/crashes"
# -timeout: one input over 10 s is a finding; -rss_limit_mb: the machine
# is shared; leaks are findings (ASan's LeakSanitizer, -detect_leaks=1).
exec "$harness" -max_total_time="$mode" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$work/crashes/" "$work/corpus" "${dirs[@]}"
