/* xfer against a real HTTP server (nginx with its WebDAV module, started by
 * tests/integration/test_xfer_nginx.sh). Environment:
 *   XFER_URL      http://127.0.0.1:PORT (PUT/GET; /auth/ wants
 *                 "Authorization: Bearer test-token"; /redir/X -> /X;
 *                 /redir-other/X -> X on XFER_URL2; /loop/ -> itself)
 *   XFER_WWW      the folder nginx serves
 *   XFER_DEAD_URL an http URL where nothing listens
 *   XFER_TLS_URL, XFER_CA  (optional) the same over https, and its CA
 *   XFER_TMP      a scratch folder
 * Digests are checked against `openssl dgst -sm3` of the files nginx wrote. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "crypto/crypto.h"
#include "xfer/xfer.h"

static const char *base_url, *www, *dead_url, *tls_url, *ca, *tmp;

static const char *env(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v) {
		fprintf(stderr, "%s is not set\n", name);
		exit(2);
	}
	return v;
}

/* `openssl dgst -sm3 -r path`: the digest as the CLI computes it. */
static void openssl_sm3(const char *path, char out[CRYPTO_SM3_HEX_LEN + 1])
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "openssl dgst -sm3 -r '%s'", path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, CRYPTO_SM3_HEX_LEN + 1, p));
	pclose(p);
	assert_int_equal(strlen(out), CRYPTO_SM3_HEX_LEN);
}

static int make_file(const char *name, size_t len, uint8_t **ret_data, char *ret_path)
{
	uint8_t *data = malloc(len ? len : 1);
	assert_non_null(data);
	assert_int_equal(crypto_random(data, len), 0);
	snprintf(ret_path, 512, "%s/%s", tmp, name);
	int fd = open(ret_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	*ret_data = data;
	return fd;
}

static int scratch_fd(void)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/scratch-XXXXXX", tmp);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static long peak_rss_kib(void)
{
	struct rusage ru;
	assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
	return ru.ru_maxrss;
}

/* First, so that the peak before is this program's baseline: a 200 MiB
 * sparse file goes up and comes back without the peak RSS growing. */
static void test_memory_flat(void **state)
{
	const uint64_t size = 200ull << 20;
	char path[512], url[1024], msg[256], disk[CRYPTO_SM3_HEX_LEN + 1];
	char sm3[CRYPTO_SM3_HEX_LEN + 1];
	snprintf(path, sizeof(path), "%s/sparse", tmp);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(pwrite(fd, "end", 3, (off_t)size - 3), 3);
	assert_int_equal(xfer_object_url(base_url, "sparse.img", url, sizeof(url)), 0);
	long before = peak_rss_kib();
	assert_int_equal(xfer_upload(url, fd, size, NULL, msg, sizeof(msg)), 0);
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	uint64_t got = 0;
	assert_int_equal(xfer_download(url, null, size, NULL, &got, sm3, msg, sizeof(msg)), 0);
	long after = peak_rss_kib();
	printf("# peak RSS before %ld KiB, after a 200 MiB upload and download %ld KiB\n",
	       before, after);
	assert_true(got == size);
	snprintf(path, sizeof(path), "%s/sparse.img", www);
	openssl_sm3(path, disk);
	assert_string_equal(sm3, disk);
	assert_true(after - before < 16 * 1024);
	unlink(path);
	close(null);
	close(fd);
}

static void test_roundtrip(void **state)
{
	static const size_t sizes[] = {0, 1, 65536, 3 * 1024 * 1024 + 17};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char path[512], url[1024], prefix[1024], name[32], msg[256];
		char sm3[CRYPTO_SM3_HEX_LEN + 1], want[CRYPTO_SM3_HEX_LEN + 1];
		char disk[CRYPTO_SM3_HEX_LEN + 1];
		uint8_t *data;
		snprintf(name, sizeof(name), "rt-%zu", sizes[i]);
		int fd = make_file(name, sizes[i], &data, path);
		/* A prefix with a query string (as a pre-signed URL has); nginx
		 * ignores it and stores the path. */
		snprintf(prefix, sizeof(prefix), "%s/images/?X-Signature=abc%zu", base_url, i);
		assert_int_equal(xfer_object_url(prefix, name, url, sizeof(url)), 0);
		strcpy(msg, "stale");
		assert_int_equal(xfer_upload(url, fd, sizes[i], NULL, msg, sizeof(msg)), 0);
		assert_string_equal(msg, "");
		snprintf(path, sizeof(path), "%s/images/%s", www, name);
		openssl_sm3(path, disk);
		assert_int_equal(crypto_sm3_hex(data, sizes[i], want), 0);
		assert_string_equal(disk, want);

		int out = scratch_fd();
		uint64_t got = 0;
		assert_int_equal(xfer_download(url, out, sizes[i], NULL, &got, sm3, msg,
					       sizeof(msg)),
				 0);
		assert_true(got == sizes[i]);
		assert_string_equal(sm3, want);
		/* The bytes landed in fd. */
		uint8_t *back = malloc(sizes[i] + 1);
		assert_int_equal(pread(out, back, sizes[i] + 1, 0), (ssize_t)sizes[i]);
		assert_memory_equal(back, data, sizes[i]);
		free(back);
		close(out);

		/* One byte too many for max_bytes: 4005, outputs untouched. */
		if (sizes[i] > 0) {
			out = scratch_fd();
			got = 7;
			assert_int_equal(xfer_download(url, out, sizes[i] - 1, NULL, &got, sm3,
						       msg, sizeof(msg)),
					 4005);
			assert_true(got == 7);
			assert_non_null(strstr(msg, "larger than"));
			close(out);
		}
		free(data);
		close(fd);
	}
}

static void test_headers(void **state)
{
	char path[512], url[1024], msg[256], sm3[CRYPTO_SM3_HEX_LEN + 1];
	char want[CRYPTO_SM3_HEX_LEN + 1];
	uint8_t *data;
	int fd = make_file("auth-src", 100000, &data, path);
	assert_int_equal(crypto_sm3_hex(data, 100000, want), 0);
	json_t *h = json_pack("{s:s, s:s}", "Authorization", "Bearer test-token", "X-Extra",
			      "other-secret");
	struct xfer_options with = {.headers = h}, without = {0};
	snprintf(url, sizeof(url), "%s/auth/obj?sig=QUERYSECRET", base_url);

	/* Without the header nginx answers 403: 4004, and nothing stored. */
	assert_int_equal(xfer_upload(url, fd, 100000, &without, msg, sizeof(msg)), 4004);
	assert_non_null(strstr(msg, "HTTP status 403"));
	assert_null(strstr(msg, "QUERYSECRET"));
	snprintf(path, sizeof(path), "%s/auth/obj", www);
	assert_int_equal(access(path, F_OK), -1);
	/* With it: stored. */
	assert_int_equal(xfer_upload(url, fd, 100000, &with, msg, sizeof(msg)), 0);
	char disk[CRYPTO_SM3_HEX_LEN + 1];
	openssl_sm3(path, disk);
	assert_string_equal(disk, want);

	int out = scratch_fd();
	uint64_t got = 0;
	assert_int_equal(xfer_download(url, out, 1 << 20, NULL, &got, sm3, msg, sizeof(msg)),
			 4005);
	assert_non_null(strstr(msg, "HTTP status 403"));
	assert_null(strstr(msg, "test-token"));
	assert_null(strstr(msg, "QUERYSECRET"));
	/* The 403 page did not land in fd. */
	assert_int_equal(lseek(out, 0, SEEK_END), 0);
	assert_int_equal(xfer_download(url, out, 1 << 20, &with, &got, sm3, msg, sizeof(msg)), 0);
	assert_true(got == 100000);
	assert_string_equal(sm3, want);
	close(out);

	/* A same-origin redirect keeps the headers... */
	snprintf(url, sizeof(url), "%s/redir/auth/obj", base_url);
	out = scratch_fd();
	assert_int_equal(xfer_download(url, out, 1 << 20, &with, &got, sm3, msg, sizeof(msg)), 0);
	assert_string_equal(sm3, want);
	assert_int_equal(lseek(out, 0, SEEK_END), 100000); /* no redirect body in fd */
	close(out);
	/* ...one to another origin drops them (that origin answers 403
	 * without them, and serves the file with them). */
	snprintf(url, sizeof(url), "%s/redir-other/auth/obj", base_url);
	out = scratch_fd();
	assert_int_equal(xfer_download(url, out, 1 << 20, &with, &got, sm3, msg, sizeof(msg)),
			 4005);
	assert_non_null(strstr(msg, "HTTP status 403"));
	close(out);
	/* A redirect loop ends after 3 redirects. */
	snprintf(url, sizeof(url), "%s/loop/x", base_url);
	out = scratch_fd();
	assert_int_equal(xfer_download(url, out, 1 << 20, NULL, &got, sm3, msg, sizeof(msg)),
			 4005);
	assert_non_null(strstr(msg, "too many redirects"));
	close(out);
	/* Uploads follow no redirect. */
	snprintf(url, sizeof(url), "%s/redir/images/nope", base_url);
	assert_int_equal(xfer_upload(url, fd, 100000, NULL, msg, sizeof(msg)), 4004);
	assert_non_null(strstr(msg, "HTTP status 302"));
	json_decref(h);
	free(data);
	close(fd);
}

static void test_failures(void **state)
{
	char url[1024], msg[256], sm3[CRYPTO_SM3_HEX_LEN + 1], path[512];
	uint8_t *data;
	int fd = make_file("fail-src", 1000, &data, path);
	int out = scratch_fd();
	uint64_t got = 0;
	/* 404 */
	snprintf(url, sizeof(url), "%s/images/no-such-object", base_url);
	assert_int_equal(xfer_download(url, out, 1 << 20, NULL, &got, sm3, msg, sizeof(msg)),
			 4005);
	assert_non_null(strstr(msg, "HTTP status 404"));
	assert_int_equal(lseek(out, 0, SEEK_END), 0);
	/* Connection refused. */
	snprintf(url, sizeof(url), "%s/images/x", dead_url);
	assert_int_equal(xfer_upload(url, fd, 1000, NULL, msg, sizeof(msg)), 4004);
	assert_non_null(strstr(msg, "onnect"));
	assert_int_equal(xfer_download(url, out, 1 << 20, NULL, &got, sm3, msg, sizeof(msg)),
			 4005);
	assert_non_null(strstr(msg, "onnect"));
	/* The source fd shorter than size: a local read error, 5001. */
	snprintf(url, sizeof(url), "%s/images/short", base_url);
	assert_int_equal(xfer_upload(url, fd, 2000, NULL, msg, sizeof(msg)), 5001);
	/* A read-only fd to download into: 5001. */
	int ro = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(url, sizeof(url), "%s/images/rt-1", base_url);
	assert_int_equal(xfer_download(url, ro, 1 << 20, NULL, &got, sm3, msg, sizeof(msg)), 5001);
	close(ro);
	/* ENOSPC writing fd (/dev/full): 5001. */
	int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
	assert_true(full >= 0);
	assert_int_equal(xfer_download(url, full, 1 << 20, NULL, &got, sm3, msg, sizeof(msg)),
			 5001);
	assert_non_null(strstr(msg, "No space left"));
	close(full);
	free(data);
	close(out);
	close(fd);
}

struct worker {
	char url[1024];
	uint64_t size;
	char sm3[CRYPTO_SM3_HEX_LEN + 1];
	int rc;
};

static void *download_worker(void *arg)
{
	struct worker *w = arg;
	char msg[256];
	int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
	w->rc = xfer_download(w->url, out, 64u << 20, NULL, &w->size, w->sm3, msg, sizeof(msg));
	close(out);
	return NULL;
}

/* Several transfers at once, one per thread. */
static void test_threads(void **state)
{
	char path[512], url[1024], msg[256], want[CRYPTO_SM3_HEX_LEN + 1];
	uint8_t *data;
	const size_t len = 2 * 1024 * 1024 + 5;
	int fd = make_file("threads-src", len, &data, path);
	assert_int_equal(crypto_sm3_hex(data, len, want), 0);
	snprintf(url, sizeof(url), "%s/threads/obj", base_url);
	assert_int_equal(xfer_upload(url, fd, len, NULL, msg, sizeof(msg)), 0);
	struct worker w[6];
	pthread_t t[6];
	for (int i = 0; i < 6; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		snprintf(w[i].url, sizeof(w[i].url), "%s", url);
		assert_int_equal(pthread_create(&t[i], NULL, download_worker, &w[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].rc, 0);
		assert_true(w[i].size == len);
		assert_string_equal(w[i].sm3, want);
	}
	free(data);
	close(fd);
}

static void test_tls(void **state)
{
	if (!tls_url) {
		printf("# XFER_TLS_URL not set: https not tested\n");
		return;
	}
	char path[512], url[1024], msg[256], sm3[CRYPTO_SM3_HEX_LEN + 1];
	char want[CRYPTO_SM3_HEX_LEN + 1];
	uint8_t *data;
	int fd = make_file("tls-src", 70000, &data, path);
	assert_int_equal(crypto_sm3_hex(data, 70000, want), 0);
	struct xfer_options trusted = {.cafile = ca};
	snprintf(url, sizeof(url), "%s/tls/obj", tls_url);
	/* A self-signed server is not trusted by the system store. */
	assert_int_equal(xfer_upload(url, fd, 70000, NULL, msg, sizeof(msg)), 4004);
	assert_non_null(strstr(msg, "certificate"));
	assert_int_equal(xfer_upload(url, fd, 70000, &trusted, msg, sizeof(msg)), 0);
	int out = scratch_fd();
	uint64_t got = 0;
	assert_int_equal(xfer_download(url, out, 1 << 20, &trusted, &got, sm3, msg, sizeof(msg)),
			 0);
	assert_string_equal(sm3, want);
	/* The certificate names 127.0.0.1, not localhost. */
	const char *port = strrchr(tls_url, ':');
	snprintf(url, sizeof(url), "https://localhost%s/tls/obj", port);
	assert_int_equal(xfer_download(url, out, 1 << 20, &trusted, &got, sm3, msg, sizeof(msg)),
			 4005);
	/* A CA file that does not exist. */
	struct xfer_options missing = {.cafile = "/nonexistent/ca.pem"};
	snprintf(url, sizeof(url), "%s/tls/obj", tls_url);
	assert_int_equal(xfer_download(url, out, 1 << 20, &missing, &got, sm3, msg, sizeof(msg)),
			 4005);
	close(out);
	free(data);
	close(fd);
}

int main(void)
{
	base_url = env("XFER_URL");
	www = env("XFER_WWW");
	dead_url = env("XFER_DEAD_URL");
	tmp = env("XFER_TMP");
	tls_url = getenv("XFER_TLS_URL");
	ca = getenv("XFER_CA");
	if (tls_url && !*tls_url)
		tls_url = NULL;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memory_flat),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_failures),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_tls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
