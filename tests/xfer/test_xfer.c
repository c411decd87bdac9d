/* Unit tests of xfer: object URLs, redaction, and file:// transfers
 * checked against crypto_sm3 of the data. */
#include <errno.h>
#include <fcntl.h>
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

#include "common/util.h"
#include "crypto/crypto.h"
#include "xfer/xfer.h"

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/xfer-test-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- xfer_object_url ---- */

static void test_object_url(void **state)
{
	static const struct {
		const char *prefix, *name, *want;
	} ok[] = {
		{"https://s3.example/bucket/images", "img-1.chsm",
		 "https://s3.example/bucket/images/img-1.chsm"},
		{"https://s3.example/bucket/images/", "img-1.chsm",
		 "https://s3.example/bucket/images/img-1.chsm"},
		{"https://s3.example", "a", "https://s3.example/a"},
		{"http://h:8080/p/?X-Sig=abc&e=1", "A_b.c-D",
		 "http://h:8080/p/A_b.c-D?X-Sig=abc&e=1"},
		{"http://h:8080/p?X-Sig=abc", "n", "http://h:8080/p/n?X-Sig=abc"},
		{"file:///srv/images", "x.img", "file:///srv/images/x.img"},
		{"FILE:///srv/images/", "x.img", "FILE:///srv/images/x.img"},
	};
	char out[XFER_URL_MAX];
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(xfer_object_url(ok[i].prefix, ok[i].name, out, sizeof(out)), 0);
		assert_string_equal(out, ok[i].want);
	}
	char long_name[130];
	memset(long_name, 'a', 129);
	long_name[129] = '\0';
	static const struct {
		const char *prefix, *name;
	} bad[] = {
		{"https://h/p", ""},       {"https://h/p", "a/b"},   {"https://h/p", ".."},
		{"https://h/p", "."},      {"https://h/p", "a b"},   {"https://h/p", "a?b"},
		{"https://h/p", "a%2f"},   {"https://h/p", "ä"},     {"ftp://h/p", "a"},
		{"h/p", "a"},              {"https://h/p#f", "a"},   {"https://", "a"},
		{"https://h/p q", "a"},    {"https://h/p\n", "a"},   {"file://", "a"},
		{"https://?q=1", "a"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		strcpy(out, "untouched");
		assert_int_equal(xfer_object_url(bad[i].prefix, bad[i].name, out, sizeof(out)),
				 -EINVAL);
		assert_string_equal(out, "untouched");
	}
	assert_int_equal(xfer_object_url("https://h/p", long_name, out, sizeof(out)), -EINVAL);
	long_name[128] = '\0'; /* 128 characters: allowed */
	assert_int_equal(xfer_object_url("https://h/p", long_name, out, sizeof(out)), 0);
	assert_int_equal(strlen(out), strlen("https://h/p/") + 128);
	assert_int_equal(xfer_object_url(NULL, "a", out, sizeof(out)), -EINVAL);
	assert_int_equal(xfer_object_url("https://h/p", NULL, out, sizeof(out)), -EINVAL);
}

static void test_object_url_too_long(void **state)
{
	char out[XFER_URL_MAX + 64];
	/* Exactly fits: "https://h/p/a" is 13 bytes + NUL. */
	assert_int_equal(xfer_object_url("https://h/p", "a", out, 14), 0);
	assert_string_equal(out, "https://h/p/a");
	strcpy(out, "untouched");
	assert_int_equal(xfer_object_url("https://h/p", "a", out, 13), -ENAMETOOLONG);
	assert_string_equal(out, "untouched");
	/* A prefix whose object URL would pass XFER_URL_MAX - 1 characters. */
	char prefix[XFER_URL_MAX];
	size_t plen = XFER_URL_MAX - 1 - strlen("/a");
	memcpy(prefix, "https://h/", 10);
	memset(prefix + 10, 'p', plen - 10);
	prefix[plen] = '\0';
	assert_int_equal(xfer_object_url(prefix, "a", out, sizeof(out)), 0);
	assert_int_equal(strlen(out), XFER_URL_MAX - 1);
	assert_int_equal(xfer_object_url(prefix, "ab", out, sizeof(out)), -ENAMETOOLONG);
}

/* ---- xfer_redact_url ---- */

static void test_redact_url(void **state)
{
	static const struct {
		const char *url, *want;
	} cases[] = {
		{"https://user:secret@h.example:8443/b/o?X-Amz-Signature=s3cr3t#frag",
		 "https://h.example:8443/b/o"},
		{"http://h/p?sig=x", "http://h/p"},
		{"http://tok@h", "http://h"},
		{"http://a@b@h/p", "http://h/p"},
		{"https://h/p/q", "https://h/p/q"},
		{"file:///srv/x.img", "file:///srv/x.img"},
		{"http://h/a\nforged", "http://h/a?forged"},
		{"no-scheme?secret", "(unparsable URL)"},
		{"", "(unparsable URL)"},
	};
	char out[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		xfer_redact_url(cases[i].url, out, sizeof(out));
		assert_string_equal(out, cases[i].want);
	}
	char small[8];
	xfer_redact_url("https://host.example/path", small, sizeof(small));
	assert_string_equal(small, "https:/");
	xfer_redact_url(NULL, out, sizeof(out));
	assert_string_equal(out, "");
}

/* ---- file:// ---- */

/* A file of len pseudo-random bytes at path; returns its data (malloc'ed). */
static uint8_t *make_file(const char *path, size_t len)
{
	uint8_t *data = malloc(len ? len : 1);
	assert_non_null(data);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)((i * 2654435761u) >> 13);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return data;
}

static uint8_t *read_whole(const char *path, size_t *ret_len)
{
	char *data = NULL;
	size_t len = 0;
	assert_int_equal(chsm_read_file(path, 64u << 20, &data, &len), 0);
	*ret_len = len;
	return (uint8_t *)data;
}

static int open_new(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	return fd;
}

static void test_file_roundtrip(void **state)
{
	static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 5 * 1024 * 1024 + 7};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i];
		char src[128], url[256], prefix[128], back[128], msg[256];
		snprintf(src, sizeof(src), "%s/src-%zu", dir, len);
		uint8_t *data = make_file(src, len);
		snprintf(prefix, sizeof(prefix), "file://%s/store", dir);
		if (i == 0) {
			char cmd[160];
			snprintf(cmd, sizeof(cmd), "%s/store", dir);
			assert_int_equal(mkdir(cmd, 0700), 0);
		}
		char name[32];
		snprintf(name, sizeof(name), "obj-%zu.img", len);
		assert_int_equal(xfer_object_url(prefix, name, url, sizeof(url)), 0);

		int fd = open(src, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		strcpy(msg, "stale");
		assert_int_equal(xfer_upload(url, fd, len, NULL, msg, sizeof(msg)), 0);
		assert_string_equal(msg, "");
		close(fd);

		/* The stored object is the data, and no temp file is left. */
		char stored[160];
		snprintf(stored, sizeof(stored), "%s/store/%s", dir, name);
		size_t got_len = 0;
		uint8_t *got = read_whole(stored, &got_len);
		assert_int_equal(got_len, len);
		assert_memory_equal(got, data, len);
		free(got);
		struct stat st;
		assert_int_equal(stat(stored, &st), 0);
		mode_t mask = umask(0);
		umask(mask);
		assert_int_equal(st.st_mode & 0777, 0644 & ~mask);

		/* Download into a file that already holds a prefix: written from the
		 * current offset. */
		snprintf(back, sizeof(back), "%s/back-%zu", dir, len);
		int out = open_new(back);
		assert_int_equal(write(out, "HDR", 3), 3);
		uint64_t size = 99;
		char sm3[CRYPTO_SM3_HEX_LEN + 1], want[CRYPTO_SM3_HEX_LEN + 1];
		assert_int_equal(xfer_download(url, out, len, NULL, &size, sm3, msg, sizeof(msg)),
				 0);
		close(out);
		assert_int_equal(size, len);
		assert_int_equal(crypto_sm3_hex(data, len, want), 0);
		assert_string_equal(sm3, want);
		got = read_whole(back, &got_len);
		assert_int_equal(got_len, len + 3);
		assert_memory_equal(got, "HDR", 3);
		assert_memory_equal(got + 3, data, len);
		free(got);

		/* One byte under the size: 4005, outputs untouched. */
		if (len > 0) {
			out = open_new(back);
			size = 99;
			strcpy(sm3, "untouched");
			assert_int_equal(xfer_download(url, out, len - 1, NULL, &size, sm3, msg,
						       sizeof(msg)),
					 4005);
			assert_int_equal(size, 99);
			assert_string_equal(sm3, "untouched");
			assert_non_null(strstr(msg, "larger than"));
			close(out);
		}
		free(data);
	}
	/* Only the objects are in the folder (no .tmp- left behind). */
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "test \"$(ls '%s/store' | grep -c tmp)\" = 0", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_file_upload_replaces(void **state)
{
	char src[128], url[256], msg[256], stored[160];
	snprintf(src, sizeof(src), "%s/replace-src", dir);
	uint8_t *data = make_file(src, 1000);
	snprintf(stored, sizeof(stored), "%s/replace-dst", dir);
	free(make_file(stored, 5000));
	snprintf(url, sizeof(url), "file://%s", stored);
	int fd = open(src, O_RDONLY | O_CLOEXEC);
	assert_int_equal(xfer_upload(url, fd, 1000, NULL, msg, sizeof(msg)), 0);
	/* Only the first size bytes of fd are sent. */
	assert_int_equal(xfer_upload(url, fd, 10, NULL, msg, sizeof(msg)), 0);
	size_t len;
	uint8_t *got = read_whole(stored, &len);
	assert_int_equal(len, 10);
	assert_memory_equal(got, data, 10);
	free(got);
	/* A source shorter than size is a local read error: 5001. */
	assert_int_equal(xfer_upload(url, fd, 1001, NULL, msg, sizeof(msg)), 5001);
	assert_non_null(strstr(msg, "local file"));
	got = read_whole(stored, &len);
	assert_int_equal(len, 10); /* the old object is still whole */
	free(got);
	close(fd);
	free(data);
}

static void test_file_errors(void **state)
{
	char url[256], msg[256], src[128], back[128];
	snprintf(src, sizeof(src), "%s/err-src", dir);
	free(make_file(src, 100));
	int fd = open(src, O_RDONLY | O_CLOEXEC);
	snprintf(back, sizeof(back), "%s/err-back", dir);
	int out = open_new(back);
	uint64_t size = 0;
	char sm3[CRYPTO_SM3_HEX_LEN + 1];

	/* Upload into a missing folder: 4004, and nothing created. */
	snprintf(url, sizeof(url), "file://%s/missing/obj", dir);
	assert_int_equal(xfer_upload(url, fd, 100, NULL, msg, sizeof(msg)), 4004);
	assert_non_null(strstr(msg, "missing"));
	/* Download of a missing file: 4005. */
	assert_int_equal(xfer_download(url, out, 1000, NULL, &size, sm3, msg, sizeof(msg)), 4005);
	/* A folder is not a file. */
	snprintf(url, sizeof(url), "file://%s", dir);
	assert_int_equal(xfer_download(url, out, 1000, NULL, &size, sm3, msg, sizeof(msg)), 4005);

	/* Relative, "..", ".", query, other host, trailing '/', %00: refused. */
	char dotdot[200], dot[200], query[200], trailing[200];
	snprintf(dotdot, sizeof(dotdot), "file://%s/../%s/err-src", dir, dir + 5);
	snprintf(dot, sizeof(dot), "file://%s/./err-src", dir);
	snprintf(query, sizeof(query), "file://%s/err-src?x=1", dir);
	snprintf(trailing, sizeof(trailing), "file://%s/", dir);
	const char *bad[] = {"file://relative/path", "file://err-src", "file:err-src",
			     dotdot, dot, query, trailing, "file:///tmp/a%00b", "file:///tmp/a%0Ab", "file:///tmp/a%zz",
			     "file:///tmp/%2e%2e/etc/passwd", "file://"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(xfer_upload(bad[i], fd, 100, NULL, msg, sizeof(msg)), 4004);
		assert_int_equal(xfer_download(bad[i], out, 1000, NULL, &size, sm3, msg,
					       sizeof(msg)),
				 4005);
	}
	/* file://localhost/ and percent-encoding are accepted. */
	char enc[200];
	snprintf(enc, sizeof(enc), "file://localhost%s/err%%2Dsrc", dir);
	assert_int_equal(xfer_download(enc, out, 1000, NULL, &size, sm3, msg, sizeof(msg)), 0);
	assert_int_equal(size, 100);

	/* Unsupported schemes. */
	assert_int_equal(xfer_upload("ftp://h/x", fd, 100, NULL, msg, sizeof(msg)), 4004);
	assert_int_equal(xfer_download("gopher://h/x", out, 10, NULL, &size, sm3, msg,
				       sizeof(msg)),
			 4005);

	/* Misuse: 5000. */
	assert_int_equal(xfer_upload(NULL, fd, 100, NULL, msg, sizeof(msg)), 5000);
	assert_int_equal(xfer_upload(url, -1, 100, NULL, msg, sizeof(msg)), 5000);
	assert_int_equal(xfer_download(url, -1, 10, NULL, &size, sm3, msg, sizeof(msg)), 5000);
	assert_int_equal(xfer_download(url, out, 10, NULL, NULL, sm3, msg, sizeof(msg)), 5000);

	/* Writing fd fails (opened read-only): a local error, 5001. */
	int ro = open(src, O_RDONLY | O_CLOEXEC);
	snprintf(url, sizeof(url), "file://%s", src);
	assert_int_equal(xfer_download(url, ro, 1000, NULL, &size, sm3, msg, sizeof(msg)), 5001);
	close(ro);
	/* ENOSPC writing fd (/dev/full): 5001. */
	int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
	assert_true(full >= 0);
	assert_int_equal(xfer_download(url, full, 1000, NULL, &size, sm3, msg, sizeof(msg)),
			 5001);
	assert_non_null(strstr(msg, "No space left"));
	close(full);
	/* A NULL msg is allowed. */
	assert_int_equal(xfer_download(url, out, 1000, NULL, &size, sm3, NULL, 0), 0);
	close(fd);
	close(out);
}

/* Messages never carry the query string or header values. */
static void test_messages_redacted(void **state)
{
	char msg[512], src[128];
	snprintf(src, sizeof(src), "%s/msg-src", dir);
	free(make_file(src, 10));
	int fd = open(src, O_RDONLY | O_CLOEXEC);
	json_t *h = json_pack("{s:s}", "Authorization", "Bearer hunter2");
	struct xfer_options opt = {.headers = h};
	/* Port 1 on loopback: connection refused. */
	int r = xfer_upload("http://u:pw@127.0.0.1:1/b/o?sig=SECRETSIG", fd, 10, &opt, msg,
			    sizeof(msg));
	assert_int_equal(r, 4004);
	assert_non_null(strstr(msg, "http://127.0.0.1:1/b/o"));
	assert_null(strstr(msg, "SECRETSIG"));
	assert_null(strstr(msg, "hunter2"));
	assert_null(strstr(msg, "pw"));
	/* Bad configured headers: 5000, naming only the header. */
	json_t *bad = json_pack("{s:s}", "X-Key", "a\r\nInjected: 1");
	opt.headers = bad;
	assert_int_equal(xfer_upload("http://127.0.0.1:1/o", fd, 10, &opt, msg, sizeof(msg)),
			 5000);
	assert_non_null(strstr(msg, "X-Key"));
	assert_null(strstr(msg, "Injected"));
	json_decref(bad);
	bad = json_pack("{s:i}", "X-Num", 1);
	opt.headers = bad;
	assert_int_equal(xfer_upload("http://127.0.0.1:1/o", fd, 10, &opt, msg, sizeof(msg)),
			 5000);
	json_decref(bad);
	json_decref(h);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_object_url),
		cmocka_unit_test(test_object_url_too_long),
		cmocka_unit_test(test_redact_url),
		cmocka_unit_test(test_file_roundtrip),
		cmocka_unit_test(test_file_upload_replaces),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_messages_redacted),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
