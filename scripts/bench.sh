#!/usr/bin/env bash
# scripts/bench.sh [BUILD_DIR]: runs every benchmark of bench/ (building
# first when BUILD_DIR, default ./build, has no chsmd) and writes their
# tables, the machine and the date into docs/PERFORMANCE.md, between the
# markers <!-- bench:NAME --> and <!-- /bench:NAME -->; the rest of the
# document is left as it is. Also: `cmake --build build --target bench`.
#
# BENCH_ONLY="mgmt vsm" runs only those (mgmt vsm density drift sm2); the
# blocks of the others keep their last figures. BENCH_QUICK=1 runs short
# configurations (a smoke run; its figures mean little). A benchmark that
# fails leaves a line saying so in its block, and the script exits 1 at the
# end. Takes about 10 minutes (drift is most of it).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-${BUILD_DIR:-build}}
if [ ! -x "$BUILD_DIR/bin/chsmd" ]; then
  BUILD_DIR=$BUILD_DIR scripts/build.sh || exit 1
fi
export CHSM_BIN=$(cd "$BUILD_DIR/bin" && pwd)
ONLY=${BENCH_ONLY:-mgmt vsm density drift sm2}
OUT=$(mktemp -d /tmp/chsm-bench-XXXXXX)
trap 'rm -rf "$OUT"' EXIT
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  export BENCH_SECONDS=1 BENCH_SESSIONS=1,8 BENCH_VSMS=8 BENCH_KEY_COUNTS="10" BENCH_SM2_SECONDS=1
fi
status=0

{
  echo "Last run of scripts/bench.sh: $(date -u '+%Y-%m-%d %H:%M UTC') ($ONLY; each block below says when it was measured),"
  echo "build $(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || echo '?')."
  echo "Machine: $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)),"
  echo "$(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r),"
  echo "$(openssl version | cut -d' ' -f1-2); load average before the run $(cut -d' ' -f1-3 /proc/loadavg)."
} > "$OUT/machine"

for b in $ONLY; do
  echo "bench: $b ..." >&2
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)." > "$OUT/$b.when"
  case $b in
    sm2) "$CHSM_BIN/bench_sm2" "${BENCH_SM2_SECONDS:-2}" > "$OUT/$b" 2> "$OUT/$b.err" ;;
    mgmt|vsm|density|drift) bash "bench/$b.sh" > "$OUT/$b" 2> "$OUT/$b.err" ;;
    *) echo "scripts/bench.sh: unknown benchmark $b" >&2; exit 2 ;;
  esac
  rc=$?
  if [ $rc -ne 0 ]; then
    status=1
    { echo; echo "($b failed with status $rc at $(date -u '+%H:%M UTC'): $(tail -n 3 "$OUT/$b.err" | tr '\n' ' '))"; } >> "$OUT/$b"
    cat "$OUT/$b.err" >&2
  fi
done

python3 - "$OUT" docs/PERFORMANCE.md machine $ONLY <<'PY'
import pathlib, re, sys
out, doc, names = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
text = doc.read_text()
for name in names:
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    if begin not in text or end not in text:
        sys.exit(f"scripts/bench.sh: {doc} has no {begin} ... {end} block")
    body = (out / name).read_text().rstrip("\n")
    if name == "sm2":
        body = f"```\n{body}\n```"
    when = out / f"{name}.when"
    if when.exists():
        body = when.read_text().strip() + "\n\n" + body
    block = f"{begin}\n{body}\n{end}"
    text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda m: block, text, flags=re.S)
doc.write_text(text)
PY
[ $? -eq 0 ] || status=1
echo "docs/PERFORMANCE.md updated (${ONLY})" >&2
exit $status
