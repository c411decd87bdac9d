/*
 * test_boot.c: the launcher's records and control messages (chsmd/boot.h):
 * a table of messages and trial records, each accepted exactly when it is
 * one of the documented forms; records written and read back in a state
 * directory; boot_version_program's checks (bad versions, missing,
 * symlinked or non-executable programs).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "chsmd/boot.h"

static void messages(void **state)
{
	static const struct {
		const char *text;
		int ok;
		enum boot_msg_type type;
		const char *version;
	} cases[] = {
		{"ready 1.2.3\n", 1, BOOT_MSG_READY, "1.2.3"},
		{"upgrade 0.1.10\n", 1, BOOT_MSG_UPGRADE, "0.1.10"},
		{"restart\n", 1, BOOT_MSG_RESTART, ""},
		{"ok\n", 1, BOOT_MSG_OK, ""},
		{"ready 999999.999999.999999\n", 1, BOOT_MSG_READY, "999999.999999.999999"},
		{"ready 1.2.3", 0, 0, NULL},            /* no newline */
		{"ready 1.2.3\n\n", 0, 0, NULL},        /* two */
		{"ready\n", 0, 0, NULL},
		{"ready \n", 0, 0, NULL},
		{"ready  1.2.3\n", 0, 0, NULL},
		{"ready 1.2\n", 0, 0, NULL},
		{"ready 01.2.3\n", 0, 0, NULL},
		{"ready 1.2.3 \n", 0, 0, NULL},
		{"ready ../1.2.3\n", 0, 0, NULL},
		{"upgrade 1.2.3/x\n", 0, 0, NULL},
		{"upgrade 1000000.0.0\n", 0, 0, NULL},
		{"restart 1.2.3\n", 0, 0, NULL},
		{"restartx\n", 0, 0, NULL},
		{"ok ok\n", 0, 0, NULL},
		{"READY 1.2.3\n", 0, 0, NULL},
		{"hello\n", 0, 0, NULL},
		{"\n", 0, 0, NULL},
		{"", 0, 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct boot_msg m;
		memset(&m, 0x55, sizeof(m));
		int r = boot_msg_parse(cases[i].text, strlen(cases[i].text), &m);
		if (!cases[i].ok) {
			if (r != -EINVAL)
				fail_msg("accepted: %s", cases[i].text);
			continue;
		}
		assert_int_equal(r, 0);
		assert_int_equal(m.type, cases[i].type);
		assert_string_equal(m.version, cases[i].version);
		char out[BOOT_MSG_MAX + 1];
		assert_int_equal(boot_msg_format(&m, out, sizeof(out)), (int)strlen(cases[i].text));
		assert_string_equal(out, cases[i].text);
	}
	/* A NUL inside, and an over-long message. */
	assert_int_equal(boot_msg_parse("ok\0\n", 4, &(struct boot_msg){0}), -EINVAL);
	char longmsg[BOOT_MSG_MAX + 2];
	memset(longmsg, 'a', sizeof(longmsg));
	longmsg[sizeof(longmsg) - 1] = '\n';
	assert_int_equal(boot_msg_parse(longmsg, sizeof(longmsg), &(struct boot_msg){0}), -EINVAL);
	struct boot_msg bad = {.type = BOOT_MSG_UPGRADE};
	char out[BOOT_MSG_MAX + 1];
	assert_int_equal(boot_msg_format(&bad, out, sizeof(out)), -EINVAL);
	struct boot_msg good = {.type = BOOT_MSG_READY, .version = "1.2.3"};
	assert_int_equal(boot_msg_format(&good, out, 4), -ENOSPC);
}

static void trials(void **state)
{
	static const struct {
		const char *text;
		const char *previous, *next;   /* NULL: refused */
	} cases[] = {
		{"previous 1.0.0\nnext 1.0.1\n", "1.0.0", "1.0.1"},
		{"previous -\nnext 2.0.0\n", "", "2.0.0"},
		{"previous 1.0.0\nnext 1.0.1", NULL, NULL},
		{"previous 1.0.0\nnext 1.0.1\n\n", NULL, NULL},
		{"previous \nnext 1.0.1\n", NULL, NULL},
		{"previous --\nnext 1.0.1\n", NULL, NULL},
		{"previous 1.0.0\nnext -\n", NULL, NULL},
		{"next 1.0.1\nprevious 1.0.0\n", NULL, NULL},
		{"previous 1.0.0\n", NULL, NULL},
		{"previous 1.0\nnext 1.0.1\n", NULL, NULL},
		{"previous 1.0.0 \nnext 1.0.1\n", NULL, NULL},
		{"", NULL, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct boot_trial t;
		int r = boot_trial_parse(cases[i].text, strlen(cases[i].text), &t);
		if (!cases[i].next) {
			if (r != -EINVAL)
				fail_msg("accepted: %s", cases[i].text);
			continue;
		}
		assert_int_equal(r, 0);
		assert_string_equal(t.previous, cases[i].previous);
		assert_string_equal(t.next, cases[i].next);
	}
}

static char dir[] = "/tmp/chsm-boot-test-XXXXXX";

static void path_of(const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

static void write_file(const char *name, const char *text, mode_t mode)
{
	char p[256];
	path_of(name, p, sizeof(p));
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(p, mode), 0);
}

static void records(void **state)
{
	char v[PKG_VERSION_MAX_LEN + 1];
	struct boot_trial t;
	assert_int_equal(boot_current_read(dir, v), -ENOENT);
	assert_int_equal(boot_trial_read(dir, &t), -ENOENT);
	assert_int_equal(boot_current_write(dir, "1.2.3"), 0);
	assert_int_equal(boot_current_read(dir, v), 0);
	assert_string_equal(v, "1.2.3");
	assert_int_equal(boot_current_write(dir, "1.2"), -EINVAL);
	assert_int_equal(boot_current_read(dir, v), 0);
	assert_string_equal(v, "1.2.3");
	assert_int_equal(boot_current_write(dir, NULL), 0);
	assert_int_equal(boot_current_read(dir, v), -ENOENT);
	assert_int_equal(boot_current_write(dir, NULL), 0); /* absent already */

	struct boot_trial w = {.previous = "", .next = "1.3.0"};
	assert_int_equal(boot_trial_write(dir, &w), 0);
	assert_int_equal(boot_trial_read(dir, &t), 0);
	assert_string_equal(t.previous, "");
	assert_string_equal(t.next, "1.3.0");
	struct boot_trial bad = {.previous = "x", .next = "1.3.0"};
	assert_int_equal(boot_trial_write(dir, &bad), -EINVAL);
	assert_int_equal(boot_trial_write(dir, NULL), 0);
	assert_int_equal(boot_trial_read(dir, &t), -ENOENT);

	/* Damaged records are refused, not guessed at. */
	write_file("boot/current", "1.2.3", 0600);
	assert_int_equal(boot_current_read(dir, v), -EINVAL);
	write_file("boot/current", "../../x\n", 0600);
	assert_int_equal(boot_current_read(dir, v), -EINVAL);
	write_file("boot/trial", "previous 1.0.0\n", 0600);
	assert_int_equal(boot_trial_read(dir, &t), -EINVAL);
}

static void programs(void **state)
{
	char p[256], prog[512];
	path_of("versions", p, sizeof(p));
	assert_int_equal(mkdir(p, 0755), 0);
	assert_int_equal(boot_version_program(dir, "1.0.0", prog, sizeof(prog)), -ENOENT);
	assert_int_equal(boot_version_program(dir, "../boot", prog, sizeof(prog)), -EINVAL);
	assert_int_equal(boot_version_program(dir, NULL, prog, sizeof(prog)), -EINVAL);
	path_of("versions/1.0.0", p, sizeof(p));
	assert_int_equal(mkdir(p, 0755), 0);
	assert_int_equal(boot_version_program(dir, "1.0.0", prog, sizeof(prog)), -ENOENT);
	write_file("versions/1.0.0/chsmd", "#!/bin/sh\n", 0644);
	assert_int_equal(boot_version_program(dir, "1.0.0", prog, sizeof(prog)), -EACCES);
	write_file("versions/1.0.0/chsmd", "#!/bin/sh\n", 0755);
	assert_int_equal(boot_version_program(dir, "1.0.0", prog, sizeof(prog)), 0);
	char want[512];
	snprintf(want, sizeof(want), "%s/versions/1.0.0/chsmd", dir);
	assert_string_equal(prog, want);
	assert_int_equal(boot_version_program(dir, "1.0.0", prog, 8), -ENAMETOOLONG);
	/* A version folder that is a link (even to a good one) is refused. */
	char target[256];
	path_of("versions/1.0.1", p, sizeof(p));
	path_of("versions/1.0.0", target, sizeof(target));
	assert_int_equal(symlink(target, p), 0);
	assert_int_equal(boot_version_program(dir, "1.0.1", prog, sizeof(prog)), -ENOENT);
	/* So is a chsmd that is a link. */
	path_of("versions/1.0.2", p, sizeof(p));
	assert_int_equal(mkdir(p, 0755), 0);
	path_of("versions/1.0.2/chsmd", p, sizeof(p));
	path_of("versions/1.0.0/chsmd", target, sizeof(target));
	assert_int_equal(symlink(target, p), 0);
	assert_int_equal(boot_version_program(dir, "1.0.2", prog, sizeof(prog)), -ENOENT);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(messages),
		cmocka_unit_test(trials),
		cmocka_unit_test(records),
		cmocka_unit_test(programs),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? r : 1;
}
