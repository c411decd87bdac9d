/*
 * versions.h: the versions of the VSM service a CHSM keeps (docs/vsm.md,
 * "Versions of the VSM service"), and asking a chsm-vsmd program which
 * version it is.
 *
 * A version installed by a VSM upgrade lives in
 *     <state_dir>/vsm-versions/<version>/chsm-vsmd
 * and is shared by every VSM on that version. A VSM whose version has no
 * such program runs the supervisor's default chsm-vsmd.
 *
 * Guarantees: paths are built only from versions that pass
 * vsm_version_name_check (digits and dots), so a version read from the
 * database or a package never names anything outside vsm-versions/.
 * vsm_binary_version runs the program with the daemon's environment (as
 * the supervisor does), stdin and stderr on /dev/null and default signal
 * handling, and never leaves a
 * process behind: one that does not answer within
 * VSM_VERSION_PROBE_TIMEOUT_MS (times vsm_wait_scale(), ready.h) is killed
 * and reaped. Never logs.
 */
#ifndef CHSM_VSM_VERSIONS_H
#define CHSM_VSM_VERSIONS_H

#include <stddef.h>

/* The folder under the state folder that holds installed versions. */
#define VSM_VERSIONS_DIR "vsm-versions"
/* The program's name inside a version's folder (and in a vsm package). */
#define VSM_VERSIONS_PROGRAM "chsm-vsmd"
/* Longest version text (the store keeps 31 bytes). */
#define VSM_VERSION_MAX_LEN 31
/* How long `chsm-vsmd --version` may take: it prints one line and exits. */
#define VSM_VERSION_PROBE_TIMEOUT_MS 5000

/* 0 when version is 1..VSM_VERSION_MAX_LEN characters of digits and dots,
 * neither starting nor ending with a dot, without "..". -EINVAL otherwise. */
int vsm_version_name_check(const char *version);

/* <state_dir>/vsm-versions/<version> into out. -EINVAL for a bad version,
 * -ENAMETOOLONG when it does not fit cap bytes; out is written only on
 * success. */
int vsm_version_dir(const char *state_dir, const char *version, char *out, size_t cap);

/* The program a VSM on version runs when it is installed: writes
 * <state_dir>/vsm-versions/<version>/chsm-vsmd into out and returns 1 when
 * that is a regular file (not a symbolic link) its owner may execute;
 * returns 0 (out untouched) when it is not there (the VSM runs the
 * default), or -EINVAL / -ENAMETOOLONG as vsm_version_dir. */
int vsm_version_binary(const char *state_dir, const char *version, char *out, size_t cap);

/* Runs `path --version` and writes the one line it printed (without the
 * newline) into out. Returns 0 when it exited with status 0 after printing
 * exactly one line that passes vsm_version_name_check; -EPROTO when it
 * printed anything else or exited otherwise; -ETIMEDOUT when it took longer
 * than VSM_VERSION_PROBE_TIMEOUT_MS (it is killed); -EINVAL for cap < 2;
 * or the spawn error (-ENOENT, -EACCES, ...). out is written only on
 * success. */
int vsm_binary_version(const char *path, char *out, size_t cap);

#endif
