/*
 * cli.h: helpers for the crypto tests that compare against the openssl
 * command-line tool: a private temporary directory, files in it, and
 * commands run inside it. Every helper fails the running test on error.
 */
#ifndef CHSM_TESTS_CRYPTO_CLI_H
#define CHSM_TESTS_CRYPTO_CLI_H

#include <stddef.h>
#include <stdint.h>

/* Makes a fresh directory under /tmp; returns its malloc'ed path. */
char *cli_tmpdir(void);
/* Removes the directory made by cli_tmpdir and frees the path. */
void cli_tmpdir_free(char *dir);

/* Writes / reads dir/name. cli_read returns a malloc'ed, NUL-terminated
 * buffer and its length in *ret_len. */
void cli_write(const char *dir, const char *name, const void *data, size_t len);
uint8_t *cli_read(const char *dir, const char *name, size_t *ret_len);

/* Runs the printf-formatted shell command inside dir (stdin from /dev/null,
 * stdout and stderr to dir/out.txt) and returns its exit status. */
int cli_run(const char *dir, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Lowercase hex of data into a malloc'ed string. */
char *cli_hex(const void *data, size_t len);

#endif
