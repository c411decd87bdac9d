/*
 * prompt.c: see prompt.h. Reads with read(2) byte by byte so that no stdio
 * buffer keeps a copy of the secret.
 */
#include "chsmd/prompt.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "crypto/crypto.h"

static volatile sig_atomic_t caught;

static void on_signal(int sig)
{
	caught = sig;
}

static const int prompt_signals[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGTSTP};
#define NSIGNALS (sizeof(prompt_signals) / sizeof(prompt_signals[0]))

/* Reads one line (without its newline) into buf (cap bytes incl. NUL). */
static int read_line(char *buf, size_t cap, size_t *ret_len)
{
	size_t n = 0;
	bool too_long = false;
	for (;;) {
		char c;
		ssize_t k = read(STDIN_FILENO, &c, 1);
		if (k < 0) {
			if (errno == EINTR && !caught)
				continue;
			return -errno;
		}
		if (k == 0)
			return -ENODATA;
		if (c == '\n')
			break;
		if (n + 1 < cap)
			buf[n++] = c;
		else
			too_long = true;
		c = 0;
	}
	buf[n] = '\0';
	if (n > 0 && buf[n - 1] == '\r')
		buf[--n] = '\0';
	if (too_long)
		return -EMSGSIZE;
	*ret_len = n;
	return 0;
}

int prompt_secret_twice(const char *what, size_t max, char **ret_secret, size_t *ret_len)
{
	if (!isatty(STDIN_FILENO))
		return -ENOTTY;
	struct termios old, quiet;
	if (tcgetattr(STDIN_FILENO, &old) < 0)
		return -errno;
	char *a = calloc(1, max + 2), *b = calloc(1, max + 2);
	size_t alen = 0, blen = 0;
	if (!a || !b) {
		free(a);
		free(b);
		return -ENOMEM;
	}
	struct sigaction sa = {.sa_handler = on_signal}, saved[NSIGNALS];
	sigemptyset(&sa.sa_mask);
	caught = 0;
	for (size_t i = 0; i < NSIGNALS; i++)
		sigaction(prompt_signals[i], &sa, &saved[i]);
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
	int r = 0;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) < 0)
		r = -errno;
	if (r == 0) {
		fprintf(stderr, "%s: ", what);
		r = read_line(a, max + 2, &alen);
		fputc('\n', stderr);
	}
	if (r == 0) {
		fprintf(stderr, "%s again: ", what);
		r = read_line(b, max + 2, &blen);
		fputc('\n', stderr);
	}
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	for (size_t i = 0; i < NSIGNALS; i++)
		sigaction(prompt_signals[i], &saved[i], NULL);
	if (r == 0 && (alen > max))
		r = -EMSGSIZE;
	if (r == 0 && (alen != blen || !crypto_memeq(a, b, alen)))
		r = -EINVAL;
	crypto_free_secret(b, max + 2);
	if (caught) {
		crypto_free_secret(a, max + 2);
		raise(caught);
		return -EINTR;
	}
	if (r < 0) {
		crypto_free_secret(a, max + 2);
		return r;
	}
	/* Shrink to what the caller frees: len + 1 bytes. */
	char *out = malloc(alen + 1);
	if (!out) {
		crypto_free_secret(a, max + 2);
		return -ENOMEM;
	}
	memcpy(out, a, alen + 1);
	crypto_free_secret(a, max + 2);
	*ret_secret = out;
	*ret_len = alen;
	return 0;
}
