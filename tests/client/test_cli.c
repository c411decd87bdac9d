/*
 * Unit tests of chsmctl's command line (src/chsmctl/parse.c, commands.c,
 * usage.c): every command's argv -> (method, path, JSON body), the global
 * options and their environment fallback, --help on every level, and a
 * table of malformed command lines that must be usage errors.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "chsmctl/cli.h"
#include "crypto/crypto.h"
#include "openchsm/chsm_client.h"

#define MAX_ARGS 48
#define SM3_UPPER "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789"
#define SM3_LOWER "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"

static char tmpdir[] = "/tmp/chsm-cli-XXXXXX";
static char secret16[256], secret10[256], secret65[256], keyfile[256], notakey[256];

static void write_bytes(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void clear_env(void)
{
	unsetenv("CHSMCTL_URL");
	unsetenv("CHSMCTL_KEY");
	unsetenv("CHSMCTL_DEVICE_FINGERPRINT");
	unsetenv("CHSMCTL_CACERT");
}

static int setup(void **state)
{
	assert_non_null(mkdtemp(tmpdir));
	snprintf(secret16, sizeof(secret16), "%s/secret16", tmpdir);
	snprintf(secret10, sizeof(secret10), "%s/secret10", tmpdir);
	snprintf(secret65, sizeof(secret65), "%s/secret65", tmpdir);
	snprintf(keyfile, sizeof(keyfile), "%s/key.pem", tmpdir);
	snprintf(notakey, sizeof(notakey), "%s/notakey.pem", tmpdir);
	/* Token secret files hold base64 (of the bytes 0, 1, 2, ...), the
	 * 16-byte one with a final newline as `base64` writes it. */
	static const char b16[] = "AAECAwQFBgcICQoLDA0ODw==\n";
	static const char b10[] = "AAECAwQFBgcICQ==";
	static const char b65[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v"
				  "MDEyMzQ1Njc4OTo7PD0+P0A=";
	write_bytes(secret16, b16, strlen(b16));
	write_bytes(secret10, b10, strlen(b10));
	write_bytes(secret65, b65, strlen(b65));
	write_bytes(notakey, "hello\n", 6);
	assert_int_equal(chsm_client_keygen(keyfile, NULL), 0);
	clear_env();
	return 0;
}

static int teardown(void **state)
{
	const char *files[] = {secret16, secret10, secret65, keyfile, notakey};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		unlink(files[i]);
	rmdir(tmpdir);
	return 0;
}

/* Splits a command line on spaces ('\x01' stands for a space inside an
 * argument) and substitutes @S16@, @S10@, @S65@, @KEY@, @NOKEY@. */
struct argv_buf {
	char *argv[MAX_ARGS];
	int argc;
	char text[4096];
};

static void make_argv(struct argv_buf *b, const char *prefix, const char *line)
{
	char expanded[4096] = "";
	snprintf(expanded, sizeof(expanded), "chsmctl %s%s%s", prefix, *prefix ? " " : "", line);
	static const struct {
		const char *mark;
		const char *path;
	} subst[] = {{"@S16@", secret16}, {"@S10@", secret10}, {"@S65@", secret65},
		     {"@KEY@", keyfile}, {"@NOKEY@", notakey}};
	for (size_t i = 0; i < sizeof(subst) / sizeof(subst[0]); i++) {
		char *m;
		while ((m = strstr(expanded, subst[i].mark))) {
			char rest[4096];
			snprintf(rest, sizeof(rest), "%s", m + strlen(subst[i].mark));
			snprintf(m, sizeof(expanded) - (size_t)(m - expanded), "%s%s", subst[i].path,
				 rest);
		}
	}
	snprintf(b->text, sizeof(b->text), "%s", expanded);
	b->argc = 0;
	for (char *save = NULL, *tok = strtok_r(b->text, " ", &save); tok;
	     tok = strtok_r(NULL, " ", &save)) {
		assert_true(b->argc < MAX_ARGS - 1);
		for (char *c = tok; *c; c++)
			if (*c == '\x01')
				*c = ' ';
		b->argv[b->argc++] = tok;
	}
	b->argv[b->argc] = NULL;
}

#define GLOBALS "--url https://chsm.example:8443 --key /k.pem"

static int parse_line(const char *prefix, const char *line, struct cli_invocation *inv,
		      char *err, size_t errlen)
{
	/* static: the invocation's strings point into argv until the next call */
	static struct argv_buf b;
	const struct cli_command *scmd = NULL;
	const char *sgroup = NULL;
	make_argv(&b, prefix, line);
	return cli_parse(b.argc, b.argv, inv, err, errlen, &scmd, &sgroup);
}

/* ---- every command: argv -> request ---- */

static const struct {
	const char *line;
	const char *method;
	const char *path;
	const char *body; /* expected JSON, NULL: no body */
} ok_cases[] = {
	{"fingerprint", "GET", "/auth/platform-key/fingerprint", NULL},
	{"chsm info", "GET", "/chsm", NULL},
	{"chsm status", "GET", "/chsm/status", NULL},
	{"chsm status-all", "GET", "/chsm/status/all", NULL},
	{"chsm set-network --hostname h1 --interface name=eth0,address=10.0.0.2/24,gateway=10.0.0.1 "
	 "--interface address=fd00::2/64,name=eth1 --dns 1.1.1.1 --dns 9.9.9.9",
	 "PUT", "/chsm/network",
	 "{\"hostname\":\"h1\",\"interfaces\":[{\"name\":\"eth0\",\"address\":\"10.0.0.2/24\","
	 "\"gateway\":\"10.0.0.1\"},{\"address\":\"fd00::2/64\",\"name\":\"eth1\"}],"
	 "\"dns\":[\"1.1.1.1\",\"9.9.9.9\"]}"},
	{"chsm set-network --hostname h1 --interface name=eth0,address=10.0.0.2/24", "PUT",
	 "/chsm/network",
	 "{\"hostname\":\"h1\",\"interfaces\":[{\"name\":\"eth0\",\"address\":\"10.0.0.2/24\"}],"
	 "\"dns\":[]}"},
	{"chsm set-ntp --server a --server b", "PUT", "/chsm/ntp",
	 "{\"servers\":[\"a\",\"b\"],\"enabled\":true}"},
	{"chsm set-ntp --server a --disabled", "PUT", "/chsm/ntp",
	 "{\"servers\":[\"a\"],\"enabled\":false}"},
	{"chsm set-image-upload --url https://s3.example/img/ "
	 "--header Authorization:\x01" "Bearer\x01xyz --header X-Amz-Acl:private",
	 "PUT", "/chsm/image-upload-address",
	 "{\"url\":\"https://s3.example/img/\",\"headers\":{\"Authorization\":\"Bearer xyz\","
	 "\"X-Amz-Acl\":\"private\"}}"},
	{"chsm set-image-upload --url file:///var/img", "PUT", "/chsm/image-upload-address",
	 "{\"url\":\"file:///var/img\"}"},
	{"chsm set-log-upload --url syslog+udp://10.0.0.9:514 --level warning", "PUT",
	 "/chsm/log-upload-address", "{\"url\":\"syslog+udp://10.0.0.9:514\",\"level\":\"warning\"}"},
	{"chsm set-log-upload --url=https://log.example/in --level=info --header A:\x01" "b", "PUT",
	 "/chsm/log-upload-address",
	 "{\"url\":\"https://log.example/in\",\"level\":\"info\",\"headers\":{\"A\":\"b\"}}"},
	{"chsm export-image", "POST", "/chsm/image/export", "{}"},
	{"chsm export-image --callback-url https://p.example/cb", "POST", "/chsm/image/export",
	 "{\"callbackUrl\":\"https://p.example/cb\"}"},
	{"chsm import-image --url https://x/i --sm3 " SM3_UPPER " --replace-existing", "POST",
	 "/chsm/image/import",
	 "{\"url\":\"https://x/i\",\"sm3\":\"" SM3_LOWER "\",\"replaceExisting\":true}"},
	{"chsm import-image --url https://x/i --sm3 " SM3_LOWER, "POST", "/chsm/image/import",
	 "{\"url\":\"https://x/i\",\"sm3\":\"" SM3_LOWER "\"}"},
	{"chsm upgrade --url https://x/p --sm3 " SM3_LOWER, "POST", "/chsm/upgrade",
	 "{\"url\":\"https://x/p\",\"sm3\":\"" SM3_LOWER "\"}"},
	{"chsm reboot", "POST", "/chsm/reboot", "{}"},
	{"chsm backup --callback-url http://cb", "POST", "/chsm/backup",
	 "{\"callbackUrl\":\"http://cb\"}"},
	{"chsm restore --url https://x/b --sm3 " SM3_LOWER " --allow-other-device", "POST",
	 "/chsm/restore",
	 "{\"url\":\"https://x/b\",\"sm3\":\"" SM3_LOWER "\",\"allowOtherDevice\":true}"},
	{"chsm restore --url https://x/b --sm3 " SM3_LOWER, "POST", "/chsm/restore",
	 "{\"url\":\"https://x/b\",\"sm3\":\"" SM3_LOWER "\"}"},
	{"vsm list", "GET", "/vsms", NULL},
	{"vsm info v1", "GET", "/vsms/v1", NULL},
	{"vsm status tenant-a.vsm_2", "GET", "/vsms/tenant-a.vsm_2/status", NULL},
	{"vsm set-network v1 --ip 10.0.1.5 --prefix 24 --port 1818 --gateway 10.0.1.1", "PUT",
	 "/vsms/v1/network",
	 "{\"ipAddress\":\"10.0.1.5\",\"prefixLength\":24,\"port\":1818,\"gateway\":\"10.0.1.1\"}"},
	{"vsm set-network v1 --port 65535 --prefix 128 --ip fd00::5", "PUT", "/vsms/v1/network",
	 "{\"ipAddress\":\"fd00::5\",\"prefixLength\":128,\"port\":65535}"},
	{"vsm set-token v1 --token-id app1 --token-secret-file @S16@", "PUT", "/vsms/v1/token",
	 "{\"tokenId\":\"app1\",\"secret\":\"AAECAwQFBgcICQoLDA0ODw==\"}"},
	{"vsm export-image v1", "POST", "/vsms/v1/image/export", "{}"},
	{"vsm import-image v2 --url https://x/v --sm3 " SM3_LOWER, "POST", "/vsms/v2/image/import",
	 "{\"url\":\"https://x/v\",\"sm3\":\"" SM3_LOWER "\"}"},
	{"vsm start v1", "POST", "/vsms/v1/start", "{}"},
	{"vsm stop v1 --callback-url https://cb", "POST", "/vsms/v1/stop",
	 "{\"callbackUrl\":\"https://cb\"}"},
	{"vsm restart v1", "POST", "/vsms/v1/restart", "{}"},
	{"vsm reset v1", "POST", "/vsms/v1/reset", "{}"},
	{"vsm upgrade v1 --url https://x/p --sm3 " SM3_LOWER, "POST", "/vsms/v1/upgrade",
	 "{\"url\":\"https://x/p\",\"sm3\":\"" SM3_LOWER "\"}"},
	{"vsm create --name n1 --ip 10.0.0.2 --prefix 32 --port 9", "POST", "/vsms",
	 "{\"name\":\"n1\",\"network\":{\"ipAddress\":\"10.0.0.2\",\"prefixLength\":32,\"port\":9}}"},
	{"vsm create --id v9 --name Tenant\x01" "A --ip 10.0.1.9 --prefix 24 --port 1818 "
	 "--token-id app --token-secret-file @S16@ --max-keys 1000 --max-sessions 64 "
	 "--memory-mib 512 --start --callback-url https://cb",
	 "POST", "/vsms",
	 "{\"vsmId\":\"v9\",\"name\":\"Tenant A\",\"network\":{\"ipAddress\":\"10.0.1.9\","
	 "\"prefixLength\":24,\"port\":1818},\"token\":{\"tokenId\":\"app\","
	 "\"secret\":\"AAECAwQFBgcICQoLDA0ODw==\"},\"resources\":{\"maxKeys\":1000,"
	 "\"maxSessions\":64,\"memoryMiB\":512},\"start\":true,\"callbackUrl\":\"https://cb\"}"},
	{"vsm create --name n --ip 10.0.0.1 --prefix 8 --port 1 --gateway 10.0.0.254 --max-keys 5",
	 "POST", "/vsms",
	 "{\"name\":\"n\",\"network\":{\"ipAddress\":\"10.0.0.1\",\"prefixLength\":8,\"port\":1,"
	 "\"gateway\":\"10.0.0.254\"},\"resources\":{\"maxKeys\":5}}"},
	{"vsm delete v1", "DELETE", "/vsms/v1", "{}"},
	{"task get task-0123abcd", "GET", "/tasks/task-0123abcd", NULL},
	/* --body: the escape hatch, options on top, no defaults, no checks */
	{"chsm set-ntp --body {}", "PUT", "/chsm/ntp", "{}"},
	{"chsm set-ntp --body {\"servers\":[\"x\"],\"extra\":1} --disabled", "PUT", "/chsm/ntp",
	 "{\"servers\":[\"x\"],\"extra\":1,\"enabled\":false}"},
	{"vsm create --body {\"name\":\"a\",\"network\":{\"port\":1}} --ip 1.2.3.4", "POST", "/vsms",
	 "{\"name\":\"a\",\"network\":{\"port\":1,\"ipAddress\":\"1.2.3.4\"}}"},
	{"vsm start v1 --body {\"x\":true}", "POST", "/vsms/v1/start", "{\"x\":true}"},
	{"set-platform-key --body {\"publicKey\":\"pem\"}", "PUT", "/auth/platform-key",
	 "{\"publicKey\":\"pem\"}"},
};

static void assert_json_equal(const char *got, const char *want)
{
	json_error_t e;
	json_t *g = json_loads(got, 0, &e), *w = json_loads(want, 0, &e);
	assert_non_null(w);
	if (!g || !json_equal(g, w))
		fail_msg("body %s, expected %s", got, want);
	json_decref(g);
	json_decref(w);
}

static void test_every_command(void **state)
{
	for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
		struct cli_invocation inv;
		char err[256];
		int r = parse_line(GLOBALS, ok_cases[i].line, &inv, err, sizeof(err));
		if (r != 0)
			fail_msg("'%s': %d %s", ok_cases[i].line, r, err);
		assert_int_equal(inv.action, CLI_REQUEST);
		assert_string_equal(inv.method, ok_cases[i].method);
		assert_string_equal(inv.path, ok_cases[i].path);
		if (ok_cases[i].body)
			assert_json_equal(inv.body, ok_cases[i].body);
		else
			assert_null(inv.body);
		cli_invocation_free(&inv);
	}
}

/* Every command of the table is reached by some case above or below. */
static void test_table_covered(void **state)
{
	size_t n = 0;
	for (const struct cli_command *c = cli_commands; c->name; c++, n++) {
		char words[64];
		snprintf(words, sizeof(words), "%s%s%s ", c->group ? c->group : "",
			 c->group ? " " : "", c->name);
		bool found = c->action != CLI_REQUEST; /* keygen, enroll: own tests */
		for (size_t i = 0; !found && i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
			char line[64];
			snprintf(line, sizeof(line), "%s ", ok_cases[i].line);
			found = strncmp(line, words, strlen(words)) == 0;
		}
		if (!found)
			fail_msg("no test case for '%s'", words);
		assert_true(c->path == NULL || c->path[0] == '/');
		if (c->flags & CMD_ASYNC)
			assert_true(strcmp(c->method, "POST") == 0 || strcmp(c->method, "DELETE") == 0);
	}
	assert_int_equal(n, 5 + 13 + 14 + 1);
}

static void test_set_platform_key(void **state)
{
	struct cli_invocation inv;
	char err[256], fp[CHSM_CLIENT_FINGERPRINT_LEN + 1], *want = NULL;
	assert_int_equal(parse_line(GLOBALS, "set-platform-key --public-key @KEY@", &inv, err,
				    sizeof(err)),
			 0);
	assert_string_equal(inv.method, "PUT");
	assert_string_equal(inv.path, "/auth/platform-key");
	assert_int_equal(chsm_client_key_info(keyfile, &want, fp), 0);
	json_t *body = json_loads(inv.body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(body, "publicKey")), want);
	assert_int_equal(json_object_size(body), 1);
	assert_non_null(strstr(want, "-----BEGIN PUBLIC KEY-----"));
	json_decref(body);
	free(want);
	cli_invocation_free(&inv);
}

static void test_local_commands(void **state)
{
	struct cli_invocation inv;
	char err[256];
	/* keygen needs neither a CHSM address nor a key */
	assert_int_equal(parse_line("", "keygen --out /tmp/x.pem", &inv, err, sizeof(err)), 0);
	assert_int_equal(inv.action, CLI_KEYGEN);
	assert_string_equal(inv.keygen_out, "/tmp/x.pem");
	assert_null(inv.path);
	cli_invocation_free(&inv);

	assert_int_equal(parse_line(GLOBALS, "enroll --enrollment-code ABCDEFGHJKMNPQRSTVWXYZ2345",
				    &inv, err, sizeof(err)),
			 0);
	assert_int_equal(inv.action, CLI_ENROLL);
	assert_string_equal(inv.enrollment_code, "ABCDEFGHJKMNPQRSTVWXYZ2345");
	assert_string_equal(inv.g.key, "/k.pem");
	cli_invocation_free(&inv);

	/* fingerprint needs no key */
	assert_int_equal(parse_line("--url https://h:1", "fingerprint", &inv, err, sizeof(err)), 0);
	assert_null(inv.g.key);
	cli_invocation_free(&inv);
}

/* drift: two CHSMs, each with its own trust options; the global --key and
 * --cacert are defaults, --url and --device-fingerprint are refused. */
#define DRIFT_OK "drift --from https://a:1 --vsm v1 --to https://b:2 --target-vsm v2"

static void test_drift_command(void **state)
{
	struct cli_invocation inv;
	char err[256];
	clear_env();
	assert_int_equal(parse_line("--key /k.pem", DRIFT_OK " --move-network --image "
				    "file:///i --sm3 " SM3_UPPER " --from-device-fingerprint "
				    SM3_LOWER " --to-key /t.pem --to-cacert /ca.pem --timeout 30",
				    &inv, err, sizeof(err)),
			 0);
	assert_int_equal(inv.action, CLI_DRIFT);
	assert_string_equal(cli_opt_value(&inv, "from"), "https://a:1");
	assert_string_equal(cli_opt_value(&inv, "to"), "https://b:2");
	assert_string_equal(cli_opt_value(&inv, "vsm"), "v1");
	assert_string_equal(cli_opt_value(&inv, "target-vsm"), "v2");
	assert_string_equal(cli_opt_value(&inv, "image"), "file:///i");
	assert_string_equal(cli_opt_value(&inv, "sm3"), SM3_UPPER);
	assert_string_equal(cli_opt_value(&inv, "move-network"), "");
	assert_null(cli_opt_value(&inv, "stop-source"));
	assert_null(cli_opt_value(&inv, "from-key"));
	assert_string_equal(cli_opt_value(&inv, "to-key"), "/t.pem");
	assert_string_equal(cli_opt_value(&inv, "from-device-fingerprint"), SM3_LOWER);
	assert_null(cli_opt_value(&inv, "nosuch"));
	assert_string_equal(inv.g.key, "/k.pem");
	assert_int_equal(inv.g.timeout_ms, 30000);
	assert_null(inv.path);
	assert_null(inv.body);
	cli_invocation_free(&inv);

	/* per-side keys replace the global one */
	assert_int_equal(parse_line("", DRIFT_OK " --from-key /f.pem --to-key /t.pem", &inv, err,
				    sizeof(err)),
			 0);
	cli_invocation_free(&inv);

	static const struct {
		const char *prefix, *line, *message;
	} bad[] = {
		{"--key /k", "drift --vsm v1 --to https://b:2 --target-vsm v2", "missing --from"},
		{"--key /k", "drift --from https://a:1 --to https://b:2 --target-vsm v2",
		 "missing --vsm"},
		{"--key /k", DRIFT_OK " --image file:///i", "--image needs --sm3 too"},
		{"--key /k", DRIFT_OK " --sm3 " SM3_LOWER, "--sm3 needs --image too"},
		{"--key /k", DRIFT_OK " --image u --sm3 abc", "64 hex digits"},
		{"--key /k", DRIFT_OK " --to-device-fingerprint xyz", "64 hex digits"},
		{"--key /k", "drift --from https://a:1 --vsm .v --to https://b:2 --target-vsm v2",
		 "invalid VSM ID"},
		{"--key /k", "drift --from https://a:1 --vsm v1 --to https://b:2 --target-vsm a/b",
		 "invalid VSM ID"},
		{"--key /k --url https://c:3", DRIFT_OK, "give --from and --to"},
		{"--key /k --device-fingerprint " SM3_LOWER, DRIFT_OK, "--from-device-fingerprint"},
		{"", DRIFT_OK " --to-key /t", "give --from-key or --key"},
		{"", DRIFT_OK " --from-key /f", "give --to-key or --key"},
		{"--key /k", DRIFT_OK " --move-network=yes", "takes no value"},
		{"--key /k", DRIFT_OK " --vsm v3", "given twice"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse_line(bad[i].prefix, bad[i].line, &inv, err, sizeof(err));
		if (r != -EINVAL)
			fail_msg("'%s': %d, expected a usage error", bad[i].line, r);
		if (!strstr(err, bad[i].message))
			fail_msg("'%s': message '%s', expected '%s'", bad[i].line, err,
				 bad[i].message);
	}
}

/* ---- global options ---- */

static void test_globals(void **state)
{
	struct cli_invocation inv;
	char err[256];
	assert_int_equal(
		parse_line("--url https://h:1 --key /k --device-fingerprint " SM3_UPPER
			   " --cacert /ca.pem --idempotency-key op-1:a.b_c --timeout 5",
			   "vsm start v1 --wait --json --insecure", &inv, err, sizeof(err)),
		0);
	assert_string_equal(inv.g.url, "https://h:1");
	assert_string_equal(inv.g.key, "/k");
	assert_string_equal(inv.g.device_fingerprint, SM3_UPPER);
	assert_string_equal(inv.g.cacert, "/ca.pem");
	assert_string_equal(inv.g.idempotency_key, "op-1:a.b_c");
	assert_int_equal(inv.g.timeout_ms, 5000);
	assert_true(inv.g.wait);
	assert_true(inv.g.json);
	assert_true(inv.g.insecure);
	assert_string_equal(inv.target_id, "v1");
	cli_invocation_free(&inv);

	/* defaults */
	assert_int_equal(parse_line(GLOBALS, "chsm info", &inv, err, sizeof(err)), 0);
	assert_false(inv.g.wait || inv.g.json || inv.g.insecure);
	assert_int_equal(inv.g.timeout_ms, 0);
	assert_null(inv.g.idempotency_key);
	assert_null(inv.g.device_fingerprint);
	cli_invocation_free(&inv);

	/* --name=value form, globals between command words and options */
	assert_int_equal(parse_line("", "vsm --url=https://h:2 info --key=/k2 v3", &inv, err,
				    sizeof(err)),
			 -EINVAL); /* a global option cannot split "vsm info" */
	assert_int_equal(parse_line("--url=https://h:2", "vsm info --key=/k2 v3", &inv, err,
				    sizeof(err)),
			 0);
	assert_string_equal(inv.g.url, "https://h:2");
	assert_string_equal(inv.g.key, "/k2");
	assert_string_equal(inv.path, "/vsms/v3");
	cli_invocation_free(&inv);
}

static void test_env_fallback(void **state)
{
	struct cli_invocation inv;
	char err[256];
	clear_env();
	setenv("CHSMCTL_URL", "https://env:1", 1);
	setenv("CHSMCTL_KEY", "/env.pem", 1);
	setenv("CHSMCTL_DEVICE_FINGERPRINT", SM3_LOWER, 1);
	setenv("CHSMCTL_CACERT", "/env-ca.pem", 1);
	assert_int_equal(parse_line("", "chsm info", &inv, err, sizeof(err)), 0);
	assert_string_equal(inv.g.url, "https://env:1");
	assert_string_equal(inv.g.key, "/env.pem");
	assert_string_equal(inv.g.device_fingerprint, SM3_LOWER);
	assert_string_equal(inv.g.cacert, "/env-ca.pem");
	cli_invocation_free(&inv);

	/* the command line wins */
	assert_int_equal(parse_line("--url https://cli:2 --key /cli.pem --cacert /c --device-fingerprint "
				    SM3_UPPER, "chsm info", &inv, err, sizeof(err)),
			 0);
	assert_string_equal(inv.g.url, "https://cli:2");
	assert_string_equal(inv.g.key, "/cli.pem");
	assert_string_equal(inv.g.cacert, "/c");
	assert_string_equal(inv.g.device_fingerprint, SM3_UPPER);
	cli_invocation_free(&inv);

	/* an empty variable counts as unset */
	setenv("CHSMCTL_KEY", "", 1);
	assert_int_equal(parse_line("", "chsm info", &inv, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no platform key"));
	/* a malformed fingerprint from the environment is a usage error too */
	setenv("CHSMCTL_KEY", "/env.pem", 1);
	setenv("CHSMCTL_DEVICE_FINGERPRINT", "nothex", 1);
	assert_int_equal(parse_line("", "chsm info", &inv, err, sizeof(err)), -EINVAL);
	clear_env();
}

/* ---- --help on every level ---- */

static void test_help(void **state)
{
	static const struct {
		const char *line;
		const char *group;
		const char *cmd;
	} cases[] = {
		{"--help", NULL, NULL},
		{"-h", NULL, NULL},
		{"--url https://h:1 --help", NULL, NULL},
		{"chsm --help", "chsm", NULL},
		{"vsm --help", "vsm", NULL},
		{"task --help", "task", NULL},
		{"keygen --help", NULL, "keygen"},
		{"enroll --help", NULL, "enroll"},
		{"fingerprint --help", NULL, "fingerprint"},
		{"set-platform-key -h", NULL, "set-platform-key"},
		{"chsm set-ntp --help", "chsm", "set-ntp"},
		{"vsm start --help", "vsm", "start"},          /* no ID needed */
		{"vsm create --name x --help --bogus", "vsm", "create"},
		{"task get --help", "task", "get"},
		{"bogus --help", NULL, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cli_invocation inv;
		char err[256];
		clear_env();
		if (parse_line("", cases[i].line, &inv, err, sizeof(err)) != 0)
			fail_msg("'%s': %s", cases[i].line, err);
		assert_int_equal(inv.action, CLI_HELP);
		if (cases[i].group)
			assert_string_equal(inv.help_group, cases[i].group);
		else
			assert_null(inv.help_group);
		if (cases[i].cmd)
			assert_string_equal(inv.cmd->name, cases[i].cmd);
		else
			assert_null(inv.cmd);
		cli_invocation_free(&inv);
	}
}

/* Every usage text names what it documents, and a command's usage lists
 * every one of its options. */
static void test_usage_texts(void **state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	cli_usage(f, NULL, NULL);
	fflush(f);
	for (const struct cli_command *c = cli_commands; c->name; c++)
		assert_non_null(strstr(text, c->name));
	for (size_t i = 0; cli_global_opts[i].name; i++)
		assert_non_null(strstr(text, cli_global_opts[i].name));
	fclose(f);
	free(text);

	for (const struct cli_command *c = cli_commands; c->name; c++) {
		text = NULL;
		f = open_memstream(&text, &len);
		cli_usage(f, c->group, c);
		fclose(f);
		assert_non_null(strstr(text, "usage: chsmctl"));
		for (size_t i = 0; c->opts[i].name; i++) {
			char opt[64];
			snprintf(opt, sizeof(opt), "--%s", c->opts[i].name);
			assert_non_null(strstr(text, opt));
		}
		if (c->flags & CMD_ASYNC)
			assert_non_null(strstr(text, "--callback-url"));
		if (c->flags & CMD_BODY)
			assert_non_null(strstr(text, "--body"));
		for (char *line = text; *line;) {
			size_t n = strcspn(line, "\n");
			assert_true(n <= 79);
			line += n + (line[n] == '\n');
		}
		free(text);
	}
}

/* ---- malformed command lines ---- */

static const struct {
	const char *line;
	const char *message; /* a part of the error message */
} bad_cases[] = {
	{"", "missing command"},
	{"bogus", "unknown command"},
	{"chsm", "missing chsm command"},
	{"chsm --json", "missing chsm command"},
	{"chsm bogus", "unknown chsm command"},
	{"--bogus chsm info", "unknown option --bogus"},
	{"-x chsm info", "unknown option"},
	{"chsm info --bogus", "unknown option --bogus"},
	{"chsm info extra", "unexpected argument"},
	{"chsm info --callback-url https://cb", "unknown option --callback-url"},
	{"chsm info --body {}", "unknown option --body"},
	{"chsm set-ntp --body", "needs a value"},
	{"vsm start", "missing VSM ID"},
	{"vsm start v1 v2", "unexpected argument"},
	{"vsm start -v1", "unknown option"},
	{"vsm start .v1", "invalid VSM ID"},
	{"vsm start a/b", "invalid VSM ID"},
	{"vsm start a\x01" "b", "invalid VSM ID"},
	{"vsm info a1234567890123456789012345678901234567890123456789012345678901234",
	 "invalid VSM ID"},
	{"vsm info ../chsm", "invalid VSM ID"},
	{"task get", "missing task ID"},
	{"task get a/b", "invalid task ID"},
	{"task get t_1", "invalid task ID"},
	{"task get t.1", "invalid task ID"},
	{"chsm set-ntp", "missing --server"},
	{"chsm set-ntp --server", "needs a value"},
	{"chsm set-ntp --server a --disabled=yes", "takes no value"},
	{"chsm set-ntp --server 1 --server 2 --server 3 --server 4 --server 5 --server 6 "
	 "--server 7 --server 8 --server 9",
	 "more than 8"},
	{"chsm set-network --interface name=e,address=1.2.3.4/8", "missing --hostname"},
	{"chsm set-network --hostname h", "missing --interface"},
	{"chsm set-network --hostname h --interface name=eth0", "address= are required"},
	{"chsm set-network --hostname h --interface name=eth0,address=a,mtu=9000", "unknown"},
	{"chsm set-network --hostname h --interface name=eth0,name=eth1,address=a", "repeated"},
	{"chsm set-network --hostname h --interface name=eth0,,address=a", "KEY=VALUE"},
	{"chsm set-network --hostname h --interface name=eth0,address=a,", "trailing"},
	{"chsm set-network --hostname h --interface name=,address=a", "KEY=VALUE"},
	{"chsm set-network --hostname h --interface eth0", "KEY=VALUE"},
	{"chsm set-network --hostname a --hostname b --interface name=e,address=a", "given twice"},
	{"chsm set-image-upload", "missing --url"},
	{"chsm set-image-upload --url u --header NoColon", "NAME: VALUE"},
	{"chsm set-image-upload --url u --header :value", "NAME: VALUE"},
	{"chsm set-image-upload --url u --header Bad\x01Name:\x01v", "NAME: VALUE"},
	{"chsm set-image-upload --url u --header Empty:", "NAME: VALUE"},
	{"chsm set-image-upload --url u --header A:\x01x --header a:\x01y", "given twice"},
	{"chsm set-log-upload --url u", "missing --level"},
	{"chsm set-log-upload --url u --level debug", "one of error|warning|info"},
	{"chsm import-image --url u", "missing --sm3"},
	{"chsm import-image --url u --sm3 abc", "64 hex digits"},
	{"chsm import-image --url u --sm3 " SM3_LOWER "0", "64 hex digits"},
	{"chsm import-image --url u --sm3 "
	 "zbcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
	 "64 hex digits"},
	{"chsm import-image --sm3 " SM3_LOWER, "missing --url"},
	{"chsm upgrade --url u", "missing --sm3"},
	{"chsm restore --url u --sm3 " SM3_LOWER " --allow-other-device=true", "takes no value"},
	{"vsm set-network v1 --ip a --prefix 24", "missing --port"},
	{"vsm set-network v1 --ip a --prefix 129 --port 1", "from 0 to 128"},
	{"vsm set-network v1 --ip a --prefix 24 --port 65536", "from 0 to 65535"},
	{"vsm set-network v1 --ip a --prefix -1 --port 1", "from 0 to 128"},
	{"vsm set-network v1 --ip a --prefix +1 --port 1", "from 0 to 128"},
	{"vsm set-network v1 --ip a --prefix 0x1 --port 1", "from 0 to 128"},
	{"vsm set-network --ip a --prefix 24 --port 1", "missing VSM ID"},
	{"vsm set-token v1 --token-id t", "missing --token-secret-file"},
	{"vsm set-token v1 --token-id t --token-secret-file @S10@", "16 to 64 bytes"},
	{"vsm set-token v1 --token-id t --token-secret-file @S65@", "16 to 64 bytes"},
	{"vsm set-token v1 --token-id t --token-secret-file @NOKEY@", "in base64"},
	{"vsm set-token v1 --token-id t --token-secret-file /nonexistent/s",
	 "No such file"},
	{"vsm create", "missing --name"},
	{"vsm create --name a --name b", "given twice"},
	{"vsm create --name n --ip 1.2.3.4", "missing --prefix"},
	{"vsm create --name n", "missing --ip"},
	{"vsm create --name n --gateway 1.2.3.4", "missing --ip"},
	{"vsm create --name n --ip 1.2.3.4 --prefix 32 --port 9 --token-id t",
	 "--token-id needs --token-secret-file too"},
	{"vsm create --name n --ip 1.2.3.4 --prefix 32 --port 9 --token-secret-file @S16@", "needs --token-id too"},
	{"vsm create --name n --ip 1.2.3.4 --prefix 32 --port 9 --max-keys 4294967296", "from 0 to 4294967295"},
	{"vsm create --name n --ip 1.2.3.4 --prefix 32 --port 9 --start=1", "takes no value"},
	{"vsm create --body [1]", "not a JSON object"},
	{"vsm create --body {\"a\":1,\"a\":2}", "not a JSON object"},
	{"vsm create --body {", "not a JSON object"},
	{"vsm create --body {\"network\":1} --ip a", "network is not an object"},
	{"set-platform-key", "missing --public-key"},
	{"set-platform-key --public-key @NOKEY@", "not an SM2 key"},
	{"set-platform-key --public-key /nonexistent.pem", "No such file"},
	{"keygen", "missing --out"},
	{"enroll", "missing --enrollment-code"},
	{"--timeout 0 chsm info", "--timeout"},
	{"--timeout 1.5 chsm info", "--timeout"},
	{"--timeout 999999999 chsm info", "--timeout"},
	{"--idempotency-key a\x01" "b chsm info", "--idempotency-key"},
	{"--idempotency-key "
	 "a1234567890123456789012345678901234567890123456789012345678901234 chsm info",
	 "--idempotency-key"},
	{"--idempotency-key= chsm info", "--idempotency-key"},
	{"--device-fingerprint abc chsm info", "64 hex digits"},
	{"--wait --wait chsm info", "given twice"},
	{"--url", "needs a value"},
};

static void test_bad_command_lines(void **state)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct cli_invocation inv = {0};
		char err[256];
		const char *line = bad_cases[i].line;
		int r = parse_line(GLOBALS, line, &inv, err, sizeof(err));
		if (r != -EINVAL)
			fail_msg("'%s': %d, expected a usage error", line, r);
		if (!strstr(err, bad_cases[i].message))
			fail_msg("'%s': message '%s', expected '%s'", line, err,
				 bad_cases[i].message);
	}
}

static void test_missing_address_and_key(void **state)
{
	struct cli_invocation inv;
	char err[256];
	clear_env();
	assert_int_equal(parse_line("--key /k", "chsm info", &inv, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no CHSM address"));
	assert_int_equal(parse_line("--url https://h:1", "vsm list", &inv, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "no platform key"));
	assert_int_equal(parse_line("--url https://h:1", "enroll --enrollment-code X", &inv, err,
				    sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "no platform key"));
}

/* The usage scope reported with an error. */
static void test_error_scope(void **state)
{
	static const struct {
		const char *line;
		const char *group;
		const char *cmd;
	} cases[] = {
		{"bogus", NULL, NULL},
		{"chsm bogus", "chsm", NULL},
		{"vsm start", "vsm", "start"},
		{"chsm set-ntp --bogus", "chsm", "set-ntp"},
		{"keygen", NULL, "keygen"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct argv_buf b;
		struct cli_invocation inv;
		const struct cli_command *scmd = NULL;
		const char *sgroup = NULL;
		char err[256];
		make_argv(&b, GLOBALS, cases[i].line);
		assert_int_equal(cli_parse(b.argc, b.argv, &inv, err, sizeof(err), &scmd, &sgroup),
				 -EINVAL);
		if (cases[i].group)
			assert_string_equal(sgroup, cases[i].group);
		else
			assert_null(sgroup);
		if (cases[i].cmd)
			assert_string_equal(scmd->name, cases[i].cmd);
		else
			assert_null(scmd);
	}
}

/* No error message repeats a value that may be secret. */
static void test_errors_hide_secrets(void **state)
{
	static const char *const lines[] = {
		"chsm set-image-upload --url u --hedaer=Authorization:SECRETX",
		"chsm set-image-upload --url u --header SECRETX",
		"chsm set-image-upload --url u --header A:SECRETX --header a:SECRETX",
		"vsm set-token v1 --token-id t --token-secret-fil=SECRETX",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct cli_invocation inv;
		char err[256];
		assert_int_equal(parse_line(GLOBALS, lines[i], &inv, err, sizeof(err)), -EINVAL);
		if (strstr(err, "SECRETX"))
			fail_msg("'%s' leaks: %s", lines[i], err);
	}
}

/* The body of set-token holds the base64 of the raw file bytes, and
 * cli_invocation_free leaves nothing behind. */
static void test_secret_body(void **state)
{
	struct cli_invocation inv;
	char err[256];
	assert_int_equal(parse_line(GLOBALS, "vsm set-token v1 --token-id t --token-secret-file @S16@",
				    &inv, err, sizeof(err)),
			 0);
	json_t *body = json_loads(inv.body, 0, NULL);
	const char *b64 = json_string_value(json_object_get(body, "secret"));
	uint8_t *raw = NULL;
	size_t len = 0;
	assert_int_equal(crypto_base64_decode(b64, strlen(b64), &raw, &len), 0);
	assert_int_equal(len, 16);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(raw[i], i);
	free(raw);
	json_decref(body);
	cli_invocation_free(&inv);
	assert_null(inv.body);
	assert_null(inv.path);
	cli_invocation_free(NULL);
}

int main(void)
{
	cli_wipe_json_memory();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_command),
		cmocka_unit_test(test_table_covered),
		cmocka_unit_test(test_set_platform_key),
		cmocka_unit_test(test_local_commands),
		cmocka_unit_test(test_drift_command),
		cmocka_unit_test(test_globals),
		cmocka_unit_test(test_env_fallback),
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_usage_texts),
		cmocka_unit_test(test_bad_command_lines),
		cmocka_unit_test(test_missing_address_and_key),
		cmocka_unit_test(test_error_scope),
		cmocka_unit_test(test_errors_hide_secrets),
		cmocka_unit_test(test_secret_body),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
