/*
 * prompt.h: reading a secret from the terminal without echo.
 */
#ifndef CHSM_CHSMD_PROMPT_H
#define CHSM_CHSMD_PROMPT_H

#include <stddef.h>

/* Prompts on stderr ("<what>: ", then "<what> again: ") and reads two lines
 * from stdin, which must be a terminal, with echo off; the terminal is
 * restored whatever happens (a signal during the prompt restores it, then
 * is delivered). Returns 0 with *ret_secret (malloc'ed, NUL-terminated,
 * secret: crypto_free_secret(*ret_secret, *ret_len + 1)) and *ret_len (the
 * line without its newline); -ENOTTY when stdin is not a terminal,
 * -EINVAL when the two entries differ, -EMSGSIZE when longer than max,
 * -ENODATA at end of input, or -errno. Every buffer is wiped. */
int prompt_secret_twice(const char *what, size_t max, char **ret_secret, size_t *ret_len);

#endif
