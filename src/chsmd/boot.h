/*
 * boot.h: what the launcher of `chsmd run` (launcher.h) and the service it
 * starts (`chsmd serve`) share: the control messages on their socket and
 * the records under <state>/boot and <state>/versions (docs/operations.md,
 * "Upgrade and reboot").
 *
 *   versions/<X.Y.Z>/chsmd   an installed version (files of its package)
 *   boot/current             "X.Y.Z\n": the version to run; absent: the
 *                            launcher's own executable
 *   boot/trial               "previous P\nnext N\n" while version N is on
 *                            trial (P is "-" for the launcher's own
 *                            executable); its presence at a launcher's
 *                            start means the trial never passed
 *
 * Control messages (service to launcher, one per SOCK_SEQPACKET record):
 *   "ready X.Y.Z\n"    healthy and serving, running version X.Y.Z
 *   "restart\n"        about to exit 0 for a reboot: start me again
 *   "upgrade X.Y.Z\n"  about to exit 0 for an upgrade to X.Y.Z
 * and launcher to service: "ok\n", the answer to ready.
 *
 * Guarantees: parsers accept exactly these forms (a version that
 * pkg_version_parse accepts, one final newline, nothing else) and fail
 * with -EINVAL otherwise. Records are replaced atomically (a temporary
 * file, fsync, rename, fsync of the folder).
 */
#ifndef CHSM_CHSMD_BOOT_H
#define CHSM_CHSMD_BOOT_H

#include <stddef.h>

#include "pkg/pkg.h"

/* Longest control message, in bytes. */
#define BOOT_MSG_MAX 64

enum boot_msg_type { BOOT_MSG_READY, BOOT_MSG_RESTART, BOOT_MSG_UPGRADE, BOOT_MSG_OK };

struct boot_msg {
	enum boot_msg_type type;
	char version[PKG_VERSION_MAX_LEN + 1];   /* ready, upgrade; else "" */
};

/* Parses one message of len bytes into *ret. 0 or -EINVAL. */
int boot_msg_parse(const char *buf, size_t len, struct boot_msg *ret);
/* Writes m's text (NUL-terminated) into out; returns its length, or
 * -EINVAL (bad type or version) / -ENOSPC. */
int boot_msg_format(const struct boot_msg *m, char *out, size_t cap);

/* Sends m on the control socket fd (no SIGPIPE). 0 or -errno. */
int boot_send(int fd, const struct boot_msg *m);
/* Waits up to timeout_ms for "ok" on fd: 0, -ETIMEDOUT, -EPIPE (closed),
 * -EINVAL (anything else), or -errno. */
int boot_await_ok(int fd, int timeout_ms);

struct boot_trial {
	char previous[PKG_VERSION_MAX_LEN + 1];  /* "" for the launcher's own */
	char next[PKG_VERSION_MAX_LEN + 1];
};

/* Parses a trial record's text. 0 or -EINVAL. */
int boot_trial_parse(const char *buf, size_t len, struct boot_trial *ret);

/* The version boot/current names into ret (PKG_VERSION_MAX_LEN + 1
 * bytes): 0, -ENOENT when there is none, -EINVAL when it is malformed, or
 * -errno. */
int boot_current_read(const char *state_dir, char *ret);
/* Replaces boot/current with version, or removes it for NULL or "". */
int boot_current_write(const char *state_dir, const char *version);
/* Reads boot/trial: 0, -ENOENT, -EINVAL or -errno. */
int boot_trial_read(const char *state_dir, struct boot_trial *ret);
/* Writes boot/trial (durably), or removes it for NULL. */
int boot_trial_write(const char *state_dir, const struct boot_trial *t);

/* The installed program of version: <state>/versions/<version>/chsmd,
 * checked to be a valid version's folder (a real folder, not a link,
 * inside <state>/versions) holding an executable regular file chsmd.
 * Returns 0 with the path in out, -EINVAL for a bad version, -ENOENT /
 * -EACCES / -ENAMETOOLONG otherwise. */
int boot_version_program(const char *state_dir, const char *version, char *out, size_t cap);

#endif
