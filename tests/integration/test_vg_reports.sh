#!/usr/bin/env bash
# The Valgrind log check of lib.sh (vg_log_bad, it_check_reports) on
# memcheck logs in Valgrind 3.19's wording (the invalid read, the
# conditional jump, the leak and the killed process are cut from logs of a
# small faulty C program run under it). A log with an
# error record fails the test even without an ERROR SUMMARY line (the
# process was killed with SIGKILL, as the crash tests do); a clean log, and
# one with only Valgrind's warnings, does not.
. "$(dirname "$0")/lib.sh"
it_begin vg_reports
FX=$IT_DIR/fixtures
mkdir -p "$FX"
hdr() { printf '==%s== Memcheck, a memory error detector\n==%s== Command: ./bad\n==%s== \n' "$1" "$1" "$1"; }
tail_ok() { printf '==%s== HEAP SUMMARY:\n==%s==     in use at exit: 0 bytes in 0 blocks\n==%s== All heap blocks were freed -- no leaks are possible\n' "$1" "$1" "$1"; }

{ hdr 1; tail_ok 1; echo '==1== ERROR SUMMARY: 0 errors from 0 contexts (suppressed: 0 from 0)'; } > "$FX/clean.log"
{ hdr 2; echo '==2== Warning: invalid file descriptor -1 in syscall close()'
  echo '--2-- WARNING: unhandled amd64-linux syscall: 434'
  tail_ok 2; echo '==2== ERROR SUMMARY: 0 errors from 0 contexts (suppressed: 0 from 0)'; } > "$FX/warnings.log"
# Killed with SIGKILL after the error: no summary.
{ hdr 3; cat <<'L'; } > "$FX/killed-read.log"
==3== Invalid read of size 1
==3==    at 0x10919C: main (bad.c:8)
==3==  Address 0x4a42048 is 0 bytes after a block of size 8 alloc'd
==3==    at 0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==3== 
L
{ hdr 4; printf '%s\n' '==4== Invalid write of size 4' '==4==    at 0x10919C: main (bad.c:8)'; } > "$FX/killed-write.log"
{ hdr 5; printf '%s\n' '==5== Conditional jump or move depends on uninitialised value(s)' '==5==    at 0x1091BD: main (bad.c:9)'; } > "$FX/killed-cond.log"
{ hdr 6; printf '%s\n' '==6== Use of uninitialised value of size 8' '==6==    at 0x1091BD: main (bad.c:9)'; } > "$FX/killed-use.log"
{ hdr 7; printf '%s\n' '==7== Syscall param write(buf) points to uninitialised byte(s)' '==7==    at 0x4962F33: write (write.c:26)'; } > "$FX/killed-syscall.log"
{ hdr 8; printf '%s\n' '==8== Invalid free() / delete / delete[] / realloc()' '==8==    at 0x48440E4: free'; } > "$FX/killed-free.log"
{ hdr 9; printf '%s\n' '==9== Mismatched free() / delete / delete []' '==9==    at 0x48440E4: free'; } > "$FX/killed-mismatch.log"
{ hdr 10; printf '%s\n' '==10== Source and destination overlap in memcpy(0x4a42040, 0x4a42044, 8)' '==10==    at 0x484A0A0: memcpy'; } > "$FX/killed-overlap.log"
{ hdr 11; printf '%s\n' '==11== Process terminating with default action of signal 11 (SIGSEGV)' '==11==  Access not within mapped region at address 0x0'; } > "$FX/segv.log"
# A process that exited: the leak and the summary.
{ hdr 12; cat <<'L'; } > "$FX/leak.log"
==12== HEAP SUMMARY:
==12==     in use at exit: 24 bytes in 2 blocks
==12== 8 bytes in 1 blocks are definitely lost in loss record 1 of 2
==12==    at 0x48417B4: malloc (in /usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so)
==12== ERROR SUMMARY: 2 errors from 2 contexts (suppressed: 0 from 0)
L
# A leak record alone (the summary line cut off).
{ hdr 13; echo '==13== 16 bytes in 1 blocks are indirectly lost in loss record 1 of 1'; } > "$FX/leak-cut.log"
# A summary that counts errors whose records are not in the log.
{ hdr 14; tail_ok 14; echo '==14== ERROR SUMMARY: 3 errors from 1 contexts (suppressed: 0 from 0)'; } > "$FX/summary.log"
# SIGKILL of a clean process: no summary, no record.
hdr 15 > "$FX/killed-clean.log"

passes() { ! vg_log_bad "$1"; }
for f in clean warnings killed-clean; do check "$f.log passes" passes "$FX/$f.log"; done
bad=0
for f in "$FX"/*.log; do
  n=${f##*/}; case $n in clean.log|warnings.log|killed-clean.log) continue ;; esac
  bad=$((bad + 1))
  check "$n fails" vg_log_bad "$f"
done
# it_check_reports counts one failure per bad log of the folder (and keeps
# its own failures out of this test's count: a subshell).
counted=$(IT_FAIL=0; IT_VG_DIR=$FX; it_check_reports >/dev/null; echo "$IT_FAIL")
check "it_check_reports counts the $bad bad logs (counted $counted)" [ "$counted" = "$bad" ]
it_end
