/*
 * ready.h: the readiness line chsm-vsmd writes to its --ready-fd once, then
 * closes the fd:
 *
 *     READY\n
 *     ERROR <ERRNO-NAME> <short text>\n
 *
 * ERRNO-NAME is a symbolic errno name (EADDRINUSE, EACCES, ...), so the line
 * means the same to a supervisor built against another C library. A line is
 * at most VSM_READY_LINE_MAX bytes including the newline.
 *
 * Guarantees: vsm_ready_error_line uses only async-signal-safe operations
 * (it runs in a forked child before exec); nothing here allocates or logs.
 */
#ifndef CHSM_VSM_READY_H
#define CHSM_VSM_READY_H

#include <stddef.h>

#define VSM_READY_LINE_MAX 256

/* Under Valgrind (the daemon's memcheck tests, docs/testing.md) chsm-vsmd
 * runs under it too, tens of times slower than its timeouts assume. */
#define VSM_VALGRIND_WAIT_SCALE 10

/* How many times longer than the nominal timeouts the daemon waits for a
 * chsm-vsmd (its readiness, answers, exit, --version):
 * VSM_VALGRIND_WAIT_SCALE under Valgrind (a client request, where the build
 * has <valgrind/valgrind.h>), else 1. */
int vsm_wait_scale(void);

/* The symbolic name of a positive errno value, or "EIO" for values this
 * module does not know. Never NULL. */
const char *vsm_errno_name(int err);

/* Writes "ERROR <name of err> <text>\n" (NUL-terminated, newlines in text
 * replaced by spaces, truncated to fit) into buf of buflen bytes
 * (buflen >= 16). Returns the line's length without the NUL. */
size_t vsm_ready_error_line(int err, const char *text, char *buf, size_t buflen);

/* Parses one line without its newline. Returns 0 when well formed, with
 * *ret_err 0 for READY or a negative errno for an ERROR line (-EIO when the
 * name is unknown) and *ret_text the line's text ("" for READY); returns
 * -EPROTO when the line is neither. */
int vsm_ready_parse(const char *line, int *ret_err, const char **ret_text);

#endif
