/*
 * test_versions.c: installed versions of the VSM service (vsm/versions.h):
 * version names as a table of cases, the folder and program paths, and the
 * --version probe against the real chsm-vsmd and small scripts that answer
 * wrongly, fail, print too much or hang.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/version.h"
#include "vsm/versions.h"

static char dir[PATH_MAX];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/chsm-versions-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_names(void **state)
{
	static const char *good[] = {"0.1.0", "1.2.10", "999999.999999.999999", "1", "12.3"};
	static const char *bad[] = {"", ".", "..", "../x", "1..2", ".1.2", "1.2.", "1.2.3-rc1",
				    "v1.2.3", "1/2", "1.2.3 ", " 1", "01234567890123456789012345678901"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (vsm_version_name_check(good[i]) != 0)
			fail_msg("refused \"%s\"", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (vsm_version_name_check(bad[i]) != -EINVAL)
			fail_msg("accepted \"%s\"", bad[i]);
	assert_int_equal(vsm_version_name_check(NULL), -EINVAL);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_paths(void **state)
{
	char out[PATH_MAX], want[PATH_MAX + 64], vdir[PATH_MAX + 64];
	assert_int_equal(vsm_version_dir(dir, "1.2.3", out, sizeof(out)), 0);
	snprintf(want, sizeof(want), "%s/vsm-versions/1.2.3", dir);
	assert_string_equal(out, want);
	assert_int_equal(vsm_version_dir(dir, "../1", out, sizeof(out)), -EINVAL);
	assert_int_equal(vsm_version_dir(dir, "1.2.3", out, strlen(want)), -ENAMETOOLONG);

	/* Not installed: the default. */
	strcpy(out, "untouched");
	assert_int_equal(vsm_version_binary(dir, "1.2.3", out, sizeof(out)), 0);
	assert_string_equal(out, "untouched");
	assert_int_equal(vsm_version_binary(dir, "a/b", out, sizeof(out)), -EINVAL);

	snprintf(vdir, sizeof(vdir), "%s/vsm-versions", dir);
	assert_int_equal(mkdir(vdir, 0700), 0);
	assert_int_equal(mkdir(want, 0700), 0);
	snprintf(vdir, sizeof(vdir), "%s/chsm-vsmd", want);
	/* Present but not executable: not installed. */
	write_file(vdir, "#!/bin/sh\n", 0644);
	assert_int_equal(vsm_version_binary(dir, "1.2.3", out, sizeof(out)), 0);
	assert_int_equal(chmod(vdir, 0755), 0);
	assert_int_equal(vsm_version_binary(dir, "1.2.3", out, sizeof(out)), 1);
	assert_string_equal(out, vdir);
	assert_int_equal(vsm_version_binary(dir, "1.2.3", out, strlen(vdir)), -ENAMETOOLONG);
	/* A symbolic link is not an installed program. */
	assert_int_equal(unlink(vdir), 0);
	assert_int_equal(symlink("/bin/true", vdir), 0);
	assert_int_equal(vsm_version_binary(dir, "1.2.3", out, sizeof(out)), 0);
}

static void test_probe_real(void **state)
{
	char out[VSM_VERSION_MAX_LEN + 1];
	assert_int_equal(vsm_binary_version(VSMD_PATH, out, sizeof(out)), 0);
	assert_string_equal(out, chsm_version());
	assert_int_equal(vsm_binary_version(VSMD_PATH, out, 1), -EINVAL);
}

static void test_probe_cases(void **state)
{
	static const struct {
		const char *script;
		int want;
		const char *version;
	} cases[] = {
		{"#!/bin/sh\necho 7.8.9\n", 0, "7.8.9"},
		{"#!/bin/sh\n[ \"$1\" = --version ] && [ $# = 1 ] && echo 1.0.0\n", 0, "1.0.0"},
		{"#!/bin/sh\necho 7.8.9\nexit 1\n", -EPROTO, NULL},
		{"#!/bin/sh\nprintf 7.8.9\n", -EPROTO, NULL},            /* no newline */
		{"#!/bin/sh\necho 7.8.9; echo 7.8.9\n", -EPROTO, NULL},  /* two lines */
		{"#!/bin/sh\necho v7.8.9\n", -EPROTO, NULL},
		{"#!/bin/sh\nexit 0\n", -EPROTO, NULL},
		{"#!/bin/sh\nkill -9 $$\n", -EPROTO, NULL},
		{"#!/bin/sh\nwhile :; do echo 1.2.3; done\n", -EPROTO, NULL},
		{"#!/bin/sh\nexec sleep 30\n", -ETIMEDOUT, NULL},
		{"#!/bin/sh\necho 1.2.3\nexec sleep 30 >/dev/null\n", -ETIMEDOUT, NULL},
	};
	char path[PATH_MAX + 16], out[VSM_VERSION_MAX_LEN + 1];
	snprintf(path, sizeof(path), "%s/probe.sh", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unlink(path);
		write_file(path, cases[i].script, 0755);
		strcpy(out, "untouched");
		int r = vsm_binary_version(path, out, sizeof(out));
		if (r != cases[i].want)
			fail_msg("case %zu: got %d, want %d", i, r, cases[i].want);
		assert_string_equal(out, cases[i].version ? cases[i].version : "untouched");
	}
	snprintf(path, sizeof(path), "%s/absent", dir);
	assert_int_equal(vsm_binary_version(path, out, sizeof(out)), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
		cmocka_unit_test(test_probe_real),
		cmocka_unit_test_setup_teardown(test_probe_cases, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
