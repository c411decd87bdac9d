/* cli.c: see cli.h. */
#include "cli.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "common/util.h"

char *cli_tmpdir(void)
{
	char *dir = strdup("/tmp/chsm-crypto-XXXXXX");
	assert_non_null(dir);
	assert_non_null(mkdtemp(dir));
	return dir;
}

void cli_tmpdir_free(char *dir)
{
	if (dir == NULL)
		return;
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(dir);
}

static void cli_path(char *path, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(path, cap, "%s/%s", dir, name);
	assert_true(n > 0 && (size_t)n < cap);
}

void cli_write(const char *dir, const char *name, const void *data, size_t len)
{
	char path[512];
	cli_path(path, sizeof(path), dir, name);
	assert_int_equal(chsm_write_file_atomic(path, data, len, 0600), 0);
}

uint8_t *cli_read(const char *dir, const char *name, size_t *ret_len)
{
	char path[512];
	char *data = NULL;
	cli_path(path, sizeof(path), dir, name);
	assert_int_equal(chsm_read_file(path, 1 << 20, &data, ret_len), 0);
	return (uint8_t *)data;
}

int cli_run(const char *dir, const char *fmt, ...)
{
	char inner[2048], cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(inner, sizeof(inner), fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof(inner));
	n = snprintf(cmd, sizeof(cmd), "cd '%s' && { %s ; } </dev/null >out.txt 2>&1", dir, inner);
	assert_true(n > 0 && (size_t)n < sizeof(cmd));
	int status = system(cmd);
	assert_true(status != -1 && WIFEXITED(status));
	return WEXITSTATUS(status);
}

char *cli_hex(const void *data, size_t len)
{
	char *hex = malloc(2 * len + 1);
	assert_non_null(hex);
	chsm_hex_encode(data, len, hex);
	return hex;
}
