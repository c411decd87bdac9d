/*
 * test_pkg.c: upgrade packages (src/pkg, docs/packages.md): version parsing
 * and ordering, name rules, build -> verify -> extract round trips (files of
 * 0 bytes, 1 byte and 3 MiB), and the exact code of each bad package:
 * another vendor key and a changed byte (4001), another container type
 * (4003), signed packages whose contents lie (4006), unsafe names at build
 * and at extraction.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "image/image.h"
#include "pkg/pkg.h"
#include "proto/codes.h"

static crypto_sm2_key *vendor, *other;
static char workdir[] = "/tmp/chsm-pkg-test-XXXXXX";
static char err[PKG_ERR_LEN];

static int group_setup(void **state)
{
	(void)state;
	if (crypto_sm2_generate(&vendor) || crypto_sm2_generate(&other) || !mkdtemp(workdir))
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	crypto_sm2_key_free(vendor);
	crypto_sm2_key_free(other);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", workdir);
	return system(cmd) == 0 ? 0 : -1;
}

static int tmp_fd(void)
{
	char path[] = "/tmp/chsm-pkg-file-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

/* A new empty folder under workdir, its path in out. */
static void new_dir(char out[256])
{
	static int n;
	snprintf(out, 256, "%s/d%d", workdir, n++);
	assert_int_equal(mkdir(out, 0755), 0);
}

static size_t dir_entries(const char *path)
{
	DIR *d = opendir(path);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void write_file(const char *path, const uint8_t *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* ---- versions and names ---- */

static void test_versions(void **state)
{
	(void)state;
	static const char *good[] = {"0.0.0", "1.2.3", "0.10.0", "999999.999999.999999", "9.9.9"};
	static const char *bad[] = {"", "1", "1.2", "1.2.3.4", "01.2.3", "1.02.3", "1.2.03",
				    "1000000.0.0", "1.2.3 ", " 1.2.3", "1..3", "1.2.", ".1.2",
				    "1.2.-3", "+1.2.3", "1.2.3a", "a.b.c", "1.2.3\n", "00.0.0",
				    "99999999999999999999.0.0"};
	uint32_t p[3];
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
		assert_int_equal(pkg_version_parse(good[i], NULL), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		if (pkg_version_parse(bad[i], NULL) != -EINVAL)
			fail_msg("accepted version \"%s\"", bad[i]);
	}
	assert_int_equal(pkg_version_parse(NULL, NULL), -EINVAL);
	assert_int_equal(pkg_version_parse("12.0.345", p), 0);
	assert_int_equal(p[0], 12);
	assert_int_equal(p[1], 0);
	assert_int_equal(p[2], 345);

	assert_true(pkg_version_cmp("1.2.10", "1.2.9") > 0);
	assert_true(pkg_version_cmp("1.2.9", "1.2.10") < 0);
	assert_true(pkg_version_cmp("1.10.0", "1.9.99") > 0);
	assert_true(pkg_version_cmp("2.0.0", "1.999999.999999") > 0);
	assert_int_equal(pkg_version_cmp("1.2.3", "1.2.3"), 0);
	assert_true(pkg_version_cmp("0.0.1", "0.0.0") > 0);
	/* Invalid versions sort first: never "strictly newer". */
	assert_true(pkg_version_cmp("01.0.0", "0.0.0") < 0);
	assert_true(pkg_version_cmp("0.0.0", "x") > 0);
	assert_int_equal(pkg_version_cmp("x", NULL), 0);
}

static void test_names(void **state)
{
	(void)state;
	static const char *good[] = {"chsmd", "bin/chsmd", "a/b/c", ".hidden", "a..b", "...", "x y"};
	static const char *bad[] = {"", "/abs", "../x", "a/../b", "..", ".", "a/./b", "a//b",
				    "a/", "dir/..", "a\nb", "a\tb", "a\x7f", "a\\b", "\x1b[1m"};
	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
		assert_int_equal(pkg_name_check(good[i]), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		if (pkg_name_check(bad[i]) != -EINVAL)
			fail_msg("accepted name \"%s\"", bad[i]);
	char longname[PKG_NAME_MAX + 2];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[PKG_NAME_MAX + 1] = '\0';
	assert_int_equal(pkg_name_check(longname), -EINVAL);
	longname[PKG_NAME_MAX] = '\0';
	assert_int_equal(pkg_name_check(longname), 0);
	assert_int_equal(pkg_mode_normalise(0100700), PKG_MODE_EXEC);
	assert_int_equal(pkg_mode_normalise(0104777), PKG_MODE_EXEC);
	assert_int_equal(pkg_mode_normalise(0100666), PKG_MODE_DATA);
	assert_int_equal(pkg_mode_normalise(0100600), PKG_MODE_DATA);
	assert_int_equal(pkg_component_check("chsm"), 0);
	assert_int_equal(pkg_component_check("vsm"), 0);
	assert_int_equal(pkg_component_check("CHSM"), -EINVAL);
	assert_int_equal(pkg_component_check(NULL), -EINVAL);
}

/* ---- round trip ---- */

#define BIG (3u << 20)

/* Builds a package of three files (0 bytes, 1 byte, 3 MiB) into a new fd. */
static int build_three(uint8_t **ret_big, char srcdir[256])
{
	new_dir(srcdir);
	uint8_t *big = malloc(BIG);
	assert_non_null(big);
	for (size_t i = 0; i < BIG; i++)
		big[i] = (uint8_t)(i * 131 + (i >> 11));
	char p0[300], p1[300], p2[300];
	snprintf(p0, sizeof(p0), "%s/empty", srcdir);
	snprintf(p1, sizeof(p1), "%s/one", srcdir);
	snprintf(p2, sizeof(p2), "%s/big", srcdir);
	write_file(p0, NULL, 0, 0600);
	write_file(p1, (const uint8_t *)"!", 1, 0700);
	write_file(p2, big, BIG, 0640);
	struct pkg_input in[] = {{p0, "empty"}, {p1, "bin/one"}, {p2, "lib/big.so"}};
	int fd = tmp_fd();
	assert_int_equal(pkg_build(fd, "chsm", "1.2.10", vendor, in, 3, err, sizeof(err)), 0);
	*ret_big = big;
	return fd;
}

static void test_round_trip(void **state)
{
	(void)state;
	uint8_t *big;
	char src[256], dst[256];
	int fd = build_three(&big, src);
	struct pkg_info info;
	assert_int_equal(pkg_verify(fd, vendor, &info, err, sizeof(err)), 0);
	assert_string_equal(info.component, "chsm");
	assert_string_equal(info.version, "1.2.10");
	assert_int_equal(info.nfiles, 3);
	assert_string_equal(info.files[0].name, "empty");
	assert_int_equal(info.files[0].size, 0);
	assert_int_equal(info.files[0].mode, 0644);
	assert_string_equal(info.files[1].name, "bin/one");
	assert_int_equal(info.files[1].size, 1);
	assert_int_equal(info.files[1].mode, 0755);
	assert_string_equal(info.files[2].name, "lib/big.so");
	assert_int_equal(info.files[2].size, BIG);
	assert_int_equal(info.files[2].mode, 0644);
	char hex[65];
	crypto_sm3_hex(big, BIG, hex);
	assert_string_equal(info.files[2].sm3, hex);
	pkg_info_free(&info);

	new_dir(dst);
	assert_int_equal(pkg_extract(fd, vendor, dst, &info, err, sizeof(err)), 0);
	assert_int_equal(info.nfiles, 3);
	pkg_info_free(&info);
	char path[300];
	struct stat st;
	char *data;
	size_t len;
	snprintf(path, sizeof(path), "%s/empty", dst);
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	snprintf(path, sizeof(path), "%s/bin/one", dst);
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(chsm_read_file(path, 16, &data, &len), 0);
	assert_int_equal(len, 1);
	assert_memory_equal(data, "!", 1);
	free(data);
	snprintf(path, sizeof(path), "%s/lib/big.so", dst);
	assert_int_equal(chsm_read_file(path, BIG + 1, &data, &len), 0);
	assert_int_equal(len, BIG);
	assert_memory_equal(data, big, BIG);
	free(data);

	/* A folder that is not empty is refused, and left as it was. */
	assert_int_equal(pkg_extract(fd, vendor, dst, NULL, err, sizeof(err)), GMT_E_STORAGE);
	assert_int_equal(dir_entries(dst), 3);
	free(big);
	close(fd);
}

static void test_wrong_key_and_tamper(void **state)
{
	(void)state;
	uint8_t *big;
	char src[256], dst[256];
	int fd = build_three(&big, src);
	free(big);
	new_dir(dst);
	assert_int_equal(pkg_verify(fd, other, NULL, err, sizeof(err)), GMT_E_IMAGE_SIGNATURE);
	assert_int_equal(pkg_extract(fd, other, dst, NULL, err, sizeof(err)), GMT_E_IMAGE_SIGNATURE);
	assert_int_equal(dir_entries(dst), 0);

	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	/* One byte of the 3 MiB file's data, one of the signature. */
	off_t where[] = {st.st_size / 2, st.st_size - 1};
	for (size_t i = 0; i < 2; i++) {
		uint8_t b;
		assert_int_equal(pread(fd, &b, 1, where[i]), 1);
		b ^= 0x01;
		assert_int_equal(pwrite(fd, &b, 1, where[i]), 1);
		assert_int_equal(pkg_verify(fd, vendor, NULL, err, sizeof(err)), GMT_E_IMAGE_SIGNATURE);
		assert_int_equal(pkg_extract(fd, vendor, dst, NULL, err, sizeof(err)),
				 GMT_E_IMAGE_SIGNATURE);
		assert_int_equal(dir_entries(dst), 0);
		b ^= 0x01;
		assert_int_equal(pwrite(fd, &b, 1, where[i]), 1);
	}
	assert_int_equal(pkg_verify(fd, vendor, NULL, err, sizeof(err)), 0);
	close(fd);
}

/* A write that fails after the verification pass (the 3 MiB file exceeds
 * RLIMIT_FSIZE): 5001, and everything written before is removed. */
static void test_extract_undo(void **state)
{
	(void)state;
	uint8_t *big;
	char src[256], dst[256];
	int fd = build_three(&big, src);
	free(big);
	new_dir(dst);
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 1u << 20;
	void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	int e = pkg_extract(fd, vendor, dst, NULL, err, sizeof(err));
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, prev);
	assert_int_equal(e, GMT_E_STORAGE);
	assert_non_null(strstr(err, "write"));
	assert_int_equal(dir_entries(dst), 0);
	/* And with the limit gone, the same folder takes the package. */
	assert_int_equal(pkg_extract(fd, vendor, dst, NULL, err, sizeof(err)), 0);
	assert_int_equal(dir_entries(dst), 3);
	close(fd);
}

/* ---- crafted packages, properly signed ---- */

struct crafted_file {
	const char *name;       /* in the FILE record */
	const char *data;
	const char *header_sm3; /* NULL: the right one */
	bool no_record;         /* listed in the header only */
	unsigned mode;
};

static json_t *entry(const char *name, size_t size, unsigned mode, const char *sm3)
{
	return json_pack("{s:s, s:I, s:i, s:s}", "name", name, "size", (json_int_t)size, "mode",
			 (int)mode, "sm3", sm3);
}

/* A package of type (IMAGE_PACKAGE unless testing), signed by vendor,
 * whose header and records say what fs says. */
static int craft(int type, const struct crafted_file *fs, size_t n, bool extra_record)
{
	json_t *files = json_array();
	char sm3[8][65];
	for (size_t i = 0; i < n; i++) {
		crypto_sm3_hex(fs[i].data, strlen(fs[i].data), sm3[i]);
		json_array_append_new(files, entry(fs[i].name, strlen(fs[i].data),
						   fs[i].mode ? fs[i].mode : 0644,
						   fs[i].header_sm3 ? fs[i].header_sm3 : sm3[i]));
	}
	json_t *contents = json_pack("{s:s, s:s, s:o}", "component", "vsm", "version", "2.0.0",
				     "files", files);
	assert_non_null(contents);
	struct image_signer signer = {.device_id = "vendor", .key = vendor};
	uint8_t dk[IMAGE_DOMAIN_KEY_LEN] = {1};
	char fp[65];
	crypto_sm3_hex(dk, sizeof(dk), fp);
	int fd = tmp_fd();
	image_writer *w = NULL;
	bool pkg = type == IMAGE_PACKAGE;
	assert_int_equal(image_writer_new(fd, type, contents, &signer, pkg ? NULL : dk,
					  pkg ? NULL : fp, &w), 0);
	json_decref(contents);
	for (size_t i = 0; i < n; i++) {
		if (fs[i].no_record)
			continue;
		json_t *o = entry(fs[i].name, strlen(fs[i].data), fs[i].mode ? fs[i].mode : 0644,
				  fs[i].header_sm3 ? fs[i].header_sm3 : sm3[i]);
		char *text = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		assert_int_equal(image_writer_record(w, IMAGE_REC_FILE, text, strlen(text)), 0);
		free(text);
		if (*fs[i].data)
			assert_int_equal(image_writer_record(w, IMAGE_REC_DATA, fs[i].data,
							     strlen(fs[i].data)), 0);
	}
	if (extra_record)
		assert_int_equal(image_writer_record(w, IMAGE_REC_DATA, "x", 1), 0);
	uint64_t size;
	char hex[65];
	assert_int_equal(image_writer_finish(w, &size, hex), 0);
	image_writer_free(w);
	return fd;
}

static void expect_code(int fd, int code)
{
	char dst[256];
	new_dir(dst);
	int e = pkg_verify(fd, vendor, NULL, err, sizeof(err));
	if (e != code)
		fail_msg("verify: %d (%s), expected %d", e, err, code);
	assert_int_equal(pkg_extract(fd, vendor, dst, NULL, err, sizeof(err)), code);
	if (code)
		assert_int_equal(dir_entries(dst), 0);
	close(fd);
}

static void test_crafted(void **state)
{
	(void)state;
	static const char zero_sm3[] =
		"0000000000000000000000000000000000000000000000000000000000000000";
	/* The crafting itself is sound: a correct package passes. */
	struct crafted_file ok[] = {{"a", "alpha", NULL, false, 0}, {"b/c", "", NULL, false, 0755}};
	expect_code(craft(IMAGE_PACKAGE, ok, 2, false), 0);

	/* Listed in the header, missing from the records. */
	struct crafted_file missing[] = {{"a", "alpha", NULL, false, 0}, {"b", "beta", NULL, true, 0}};
	expect_code(craft(IMAGE_PACKAGE, missing, 2, false), GMT_E_PACKAGE);
	/* A summary whose SM3 is wrong (header and FILE record agree). */
	struct crafted_file wrong_sm3[] = {{"a", "alpha", zero_sm3, false, 0}};
	expect_code(craft(IMAGE_PACKAGE, wrong_sm3, 1, false), GMT_E_PACKAGE);
	/* A record after the listed files. */
	expect_code(craft(IMAGE_PACKAGE, ok, 2, true), GMT_E_PACKAGE);
	/* Modes other than 0755/0644. */
	struct crafted_file setuid[] = {{"a", "alpha", NULL, false, 04755}};
	expect_code(craft(IMAGE_PACKAGE, setuid, 1, false), GMT_E_PACKAGE);
	/* Duplicates, and a file that is another's folder. */
	struct crafted_file dup[] = {{"a", "1", NULL, false, 0}, {"a", "2", NULL, false, 0}};
	expect_code(craft(IMAGE_PACKAGE, dup, 2, false), GMT_E_PACKAGE);
	struct crafted_file shadow[] = {{"a", "1", NULL, false, 0}, {"a/b", "2", NULL, false, 0}};
	expect_code(craft(IMAGE_PACKAGE, shadow, 2, false), GMT_E_PACKAGE);
	/* Path tricks, signed by the vendor: refused before anything is written. */
	static const char *tricks[] = {"../x", "/etc/x", "a/../../x", "a//x", "..", "a\nb"};
	for (size_t i = 0; i < sizeof(tricks) / sizeof(*tricks); i++) {
		struct crafted_file f[] = {{"ok", "fine", NULL, false, 0},
					   {tricks[i], "evil", NULL, false, 0}};
		expect_code(craft(IMAGE_PACKAGE, f, 2, false), GMT_E_PACKAGE);
	}
	/* A VSM image (signed by the same key) is not a package. */
	expect_code(craft(IMAGE_VSM, ok, 2, false), GMT_E_IMAGE_FORMAT);
	/* Not a container at all. */
	int fd = tmp_fd();
	assert_int_equal(write(fd, "OCHSMIMG but not really", 23), 23);
	expect_code(fd, GMT_E_IMAGE_FORMAT);
}

static void test_build_refuses(void **state)
{
	(void)state;
	char src[256], path[300], link[300];
	new_dir(src);
	snprintf(path, sizeof(path), "%s/f", src);
	snprintf(link, sizeof(link), "%s/l", src);
	write_file(path, (const uint8_t *)"data", 4, 0644);
	assert_int_equal(symlink(path, link), 0);
	static const char *bad_names[] = {"../x", "/abs", "a/../b", "", "a\x01"};
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(*bad_names); i++) {
		struct pkg_input in[] = {{path, bad_names[i]}};
		int fd = tmp_fd();
		assert_int_equal(pkg_build(fd, "chsm", "1.0.0", vendor, in, 1, err, sizeof(err)),
				 GMT_E_PACKAGE);
		close(fd);
	}
	struct pkg_input dup[] = {{path, "x"}, {path, "x"}};
	struct pkg_input shadow[] = {{path, "x"}, {path, "x/y"}};
	struct pkg_input dir[] = {{src, "d"}};
	struct pkg_input sym[] = {{link, "l"}};
	struct pkg_input ok[] = {{path, "f"}};
	char fifo[300];
	snprintf(fifo, sizeof(fifo), "%s/fifo", src);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	struct pkg_input pipe_in[] = {{fifo, "p"}};
	int fd = tmp_fd();
	assert_int_equal(pkg_build(fd, "chsm", "1.0.0", vendor, dup, 2, err, sizeof(err)), GMT_E_PACKAGE);
	assert_int_equal(pkg_build(fd, "chsm", "1.0.0", vendor, shadow, 2, err, sizeof(err)), GMT_E_PACKAGE);
	assert_int_equal(pkg_build(fd, "chsm", "1.0.0", vendor, dir, 1, err, sizeof(err)), GMT_E_PACKAGE);
	assert_int_equal(pkg_build(fd, "chsm", "1.0.0", vendor, sym, 1, err, sizeof(err)), GMT_E_PACKAGE);
	assert_int_equal(pkg_build(fd, "chsm", "1.0.0", vendor, pipe_in, 1, err, sizeof(err)), GMT_E_PACKAGE);
	assert_int_equal(pkg_build(fd, "chsm", "1.00.0", vendor, ok, 1, err, sizeof(err)), GMT_E_PACKAGE);
	assert_int_equal(pkg_build(fd, "hsm", "1.0.0", vendor, ok, 1, err, sizeof(err)), GMT_E_PACKAGE);
	assert_int_equal(pkg_build(fd, "chsm", "1.0.0", vendor, ok, 0, err, sizeof(err)), GMT_E_PACKAGE);
	/* A public key cannot sign. */
	char *pem;
	size_t len;
	crypto_sm2_key *pub = NULL;
	assert_int_equal(crypto_sm2_public_pem(vendor, &pem, &len), 0);
	assert_int_equal(crypto_sm2_load_public_pem(pem, len, &pub), 0);
	free(pem);
	assert_int_equal(pkg_build(fd, "chsm", "1.0.0", pub, ok, 1, err, sizeof(err)), GMT_E_INTERNAL);
	crypto_sm2_key_free(pub);
	/* Nothing was written by the refusals. */
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 0);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_wrong_key_and_tamper),
		cmocka_unit_test(test_extract_undo),
		cmocka_unit_test(test_crafted),
		cmocka_unit_test(test_build_refuses),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
