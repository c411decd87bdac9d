/*
 * test_image.c: the image container format (src/image, docs/image-format.md):
 * round trips of every type, the check order of PROFILE.md §10 with exact
 * codes for every region of the file, truncation, framing errors built with
 * the writer's test hooks, packages, misuse, interoperability of the
 * trailer signature with the openssl CLI, and the chsm-image tool.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "../crypto/cli.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "image/image.h"
#include "image/image_internal.h"
#include "proto/codes.h"

static crypto_sm2_key *device_key, *attacker_key, *vendor_key;
static uint8_t domain_key[IMAGE_DOMAIN_KEY_LEN], other_domain_key[IMAGE_DOMAIN_KEY_LEN];
static char domain_fp[65], other_domain_fp[65];

static int group_setup(void **state)
{
	(void)state;
	if (crypto_sm2_generate(&device_key) || crypto_sm2_generate(&attacker_key) ||
	    crypto_sm2_generate(&vendor_key) || crypto_random(domain_key, sizeof(domain_key)) ||
	    crypto_random(other_domain_key, sizeof(other_domain_key)))
		return -1;
	crypto_sm3_hex(domain_key, sizeof(domain_key), domain_fp);
	crypto_sm3_hex(other_domain_key, sizeof(other_domain_key), other_domain_fp);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	crypto_sm2_key_free(device_key);
	crypto_sm2_key_free(attacker_key);
	crypto_sm2_key_free(vendor_key);
	return 0;
}

/* ---- files ---- */

static int tmp_fd(void)
{
	char path[] = "/tmp/chsm-image-test-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static int fd_from_bytes(const uint8_t *b, size_t len)
{
	int fd = tmp_fd();
	size_t off = 0;
	while (off < len) {
		ssize_t n = pwrite(fd, b + off, len - off, (off_t)off);
		assert_true(n > 0);
		off += (size_t)n;
	}
	return fd;
}

static uint8_t *bytes_from_fd(int fd, size_t *ret_len)
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	size_t len = (size_t)st.st_size;
	uint8_t *b = malloc(len ? len : 1);
	assert_non_null(b);
	size_t off = 0;
	while (off < len) {
		ssize_t n = pread(fd, b + off, len - off, (off_t)off);
		assert_true(n > 0);
		off += (size_t)n;
	}
	*ret_len = len;
	return b;
}

/* ---- building images ---- */

static json_t *summary(int type)
{
	if (type == IMAGE_PACKAGE)
		return json_pack("{s:s, s:s, s:[]}", "component", "chsmd", "version", "1.2.3",
				 "files");
	return json_pack("{s:s, s:s}", "vsmId", "vsm-1", "name", "test");
}

static image_writer *new_writer(int fd, int type, const crypto_sm2_key *key, const uint8_t *dk,
				const char *fp)
{
	json_t *c = summary(type);
	struct image_signer s = {type == IMAGE_PACKAGE ? "vendor" : "chsm-1", key};
	image_writer *w = NULL;
	bool pkg = type == IMAGE_PACKAGE;
	assert_int_equal(image_writer_new(fd, type, c, &s, pkg ? NULL : dk, pkg ? NULL : fp, &w), 0);
	json_decref(c);
	assert_non_null(w);
	assert_int_equal(strncmp(image_writer_id(w), "img-", 4), 0);
	assert_int_equal(strlen(image_writer_id(w)), 28);
	return w;
}

static const crypto_sm2_key *signer_of(int type)
{
	return type == IMAGE_PACKAGE ? vendor_key : device_key;
}

/* A small image of type with three records; returns its bytes. */
static uint8_t *small_image(int type, size_t *ret_len)
{
	int fd = tmp_fd();
	image_writer *w = new_writer(fd, type, signer_of(type), domain_key, domain_fp);
	assert_int_equal(image_writer_record(w, IMAGE_REC_VSM, "{\"vsmId\":\"vsm-1\"}", 17), 0);
	assert_int_equal(image_writer_record(w, IMAGE_REC_KEY, "sm2\0\0\0\0\1abcdef", 14), 0);
	assert_int_equal(image_writer_record(w, IMAGE_REC_SETTING, NULL, 0), 0);
	uint64_t size;
	char sm3[65];
	assert_int_equal(image_writer_finish(w, &size, sm3), 0);
	image_writer_free(w);
	uint8_t *b = bytes_from_fd(fd, ret_len);
	assert_int_equal(size, *ret_len);
	close(fd);
	return b;
}

/* Runs the import order of PROFILE.md §10 (without the request's sm3) and
 * reads every record; returns the first code that is not 0. */
static int import_code(const uint8_t *b, size_t len, const char *fp, const uint8_t *dk,
		       const crypto_sm2_key *vendor)
{
	int fd = fd_from_bytes(b, len);
	image_reader *r = NULL;
	int e = image_reader_open(fd, &r);
	if (e)
		goto out;
	bool pkg = image_reader_type(r) == IMAGE_PACKAGE;
	if (!pkg && (e = image_reader_check_domain(r, fp)))
		goto out;
	if ((e = image_reader_verify_signature(r, pkg ? vendor : NULL)))
		goto out;
	if (!pkg && (e = image_reader_unlock(r, dk)))
		goto out;
	for (int i = 0; i < 1000; i++) {
		int tag;
		uint8_t *v;
		size_t n;
		if ((e = image_reader_next(r, &tag, &v, &n)))
			goto out;
		crypto_free_secret(v, n);
		if (tag == IMAGE_REC_END)
			break;
	}
out:
	image_reader_free(r);
	close(fd);
	return e;
}

/* ---- round trips ---- */

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 31 + seed + (i >> 9));
}

static void round_trip(int type)
{
	static const size_t sizes[] = {0, 1, 5, 4096, 65535, 65536, 65537, IMAGE_RECORD_MAX};
	const size_t nsizes = sizeof(sizes) / sizeof(sizes[0]);
	const size_t big = IMAGE_RECORD_MAX, nbig = 3; /* 3 MiB streamed */
	uint8_t *data = malloc(IMAGE_RECORD_MAX);
	assert_non_null(data);
	int fd = tmp_fd();
	image_writer *w = new_writer(fd, type, signer_of(type), domain_key, domain_fp);
	for (size_t i = 0; i < nsizes; i++) {
		fill(data, sizes[i], (unsigned)i);
		assert_int_equal(image_writer_record(w, (int)(i % 7) + 1, sizes[i] ? data : NULL,
						     sizes[i]), 0);
	}
	for (size_t k = 0; k < nbig; k++) {
		fill(data, big, (unsigned)(100 + k));
		assert_int_equal(image_writer_record_begin(w, IMAGE_REC_DATA, big), 0);
		for (size_t off = 0; off < big;) {
			size_t n = big - off < 7777 ? big - off : 7777;
			assert_int_equal(image_writer_data(w, data + off, n), 0);
			off += n;
		}
	}
	assert_int_equal(image_writer_record_begin(w, IMAGE_REC_FILE, 0), 0);
	uint64_t size;
	char sm3[65], want[65];
	assert_int_equal(image_writer_finish(w, &size, sm3), 0);
	image_writer_free(w);

	size_t len;
	uint8_t *file = bytes_from_fd(fd, &len);
	assert_int_equal(size, len);
	assert_int_equal(crypto_sm3_hex(file, len, want), 0);
	assert_string_equal(sm3, want);
	assert_memory_equal(file, IMAGE_MAGIC, 8);
	assert_int_equal(file[8], type);
	free(file);

	image_reader *r = NULL;
	assert_int_equal(image_reader_open(fd, &r), 0);
	assert_int_equal(image_reader_type(r), type);
	assert_int_equal(image_reader_size(r), len);
	const json_t *h = image_reader_header(r);
	assert_string_equal(json_string_value(json_object_get(h, "type")), image_type_name(type));
	if (type == IMAGE_PACKAGE) {
		assert_null(json_object_get(h, "domainFingerprint"));
		assert_int_equal(image_reader_verify_signature(r, vendor_key), 0);
	} else {
		assert_int_equal(image_reader_check_domain(r, domain_fp), 0);
		assert_int_equal(image_reader_verify_signature(r, NULL), 0);
		assert_int_equal(image_reader_unlock(r, domain_key), 0);
	}
	int tag;
	uint8_t *v;
	size_t n;
	for (size_t i = 0; i < nsizes; i++) {
		assert_int_equal(image_reader_next(r, &tag, &v, &n), 0);
		assert_int_equal(tag, (int)(i % 7) + 1);
		assert_int_equal(n, sizes[i]);
		fill(data, sizes[i], (unsigned)i);
		if (n)
			assert_memory_equal(v, data, n);
		else
			assert_null(v);
		crypto_free_secret(v, n);
	}
	uint8_t *got = malloc(big);
	assert_non_null(got);
	for (size_t k = 0; k < nbig; k++) {
		assert_int_equal(image_reader_next_begin(r, &tag, &n), 0);
		assert_int_equal(tag, IMAGE_REC_DATA);
		assert_int_equal(n, big);
		size_t off = 0, m;
		do {
			assert_int_equal(image_reader_read(r, got + off, 10007, &m), 0);
			off += m;
		} while (m);
		assert_int_equal(off, big);
		fill(data, big, (unsigned)(100 + k));
		assert_memory_equal(got, data, big);
	}
	assert_int_equal(image_reader_next_begin(r, &tag, &n), 0);
	assert_int_equal(tag, IMAGE_REC_FILE);
	assert_int_equal(n, 0);
	assert_int_equal(image_reader_next(r, &tag, &v, &n), 0);
	assert_int_equal(tag, IMAGE_REC_END);
	assert_int_equal(image_reader_next(r, &tag, &v, &n), 0);
	assert_int_equal(tag, IMAGE_REC_END);
	image_reader_free(r);
	free(got);
	free(data);
	close(fd);
}

static void test_round_trip_vsm(void **state) { (void)state; round_trip(IMAGE_VSM); }
static void test_round_trip_chsm(void **state) { (void)state; round_trip(IMAGE_CHSM); }
static void test_round_trip_backup(void **state) { (void)state; round_trip(IMAGE_BACKUP); }
static void test_round_trip_package(void **state) { (void)state; round_trip(IMAGE_PACKAGE); }

/* Partially read values are skipped by the next call. */
static void test_skip_value(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = small_image(IMAGE_VSM, &len);
	int fd = fd_from_bytes(b, len);
	image_reader *r = NULL;
	int tag;
	size_t n, m;
	uint8_t two[2], *v;
	assert_int_equal(image_reader_open(fd, &r), 0);
	assert_int_equal(image_reader_unlock(r, domain_key), 0);
	assert_int_equal(image_reader_next_begin(r, &tag, &n), 0);
	assert_int_equal(n, 17);
	assert_int_equal(image_reader_read(r, two, sizeof(two), &m), 0);
	assert_int_equal(m, 2);
	assert_memory_equal(two, "{\"", 2);
	assert_int_equal(image_reader_next(r, &tag, &v, &n), 0);
	assert_int_equal(tag, IMAGE_REC_KEY);
	assert_int_equal(n, 14);
	assert_memory_equal(v, "sm2\0\0\0\0\1abcdef", 14);
	crypto_free_secret(v, n);
	image_reader_free(r);
	close(fd);
	free(b);
}

/* ---- memory ---- */

static long peak_rss_kib(void)
{
	struct rusage ru;
	assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
	return ru.ru_maxrss;
}

/* Writing and reading a 64 MiB image (64 records of 1 MiB, streamed in
 * 64 KiB pieces) raises the process's peak memory by far less than the
 * image: the writer and the reader stream through fixed buffers. */
static void test_memory_flat(void **state)
{
	(void)state;
	enum { PIECE = 64 * 1024, RECORDS = 64 };
	static uint8_t piece[PIECE];
	memset(piece, 0x5a, sizeof(piece));
	long before = peak_rss_kib();
	json_t *c = summary(IMAGE_VSM);
	struct image_signer s = {"chsm-1", device_key};
	image_writer *w = NULL;
	int fd = tmp_fd();
	assert_int_equal(image_writer_new(fd, IMAGE_VSM, c, &s, domain_key, domain_fp, &w), 0);
	json_decref(c);
	for (int i = 0; i < RECORDS; i++) {
		assert_int_equal(image_writer_record_begin(w, IMAGE_REC_DATA, IMAGE_RECORD_MAX), 0);
		for (size_t off = 0; off < IMAGE_RECORD_MAX; off += PIECE)
			assert_int_equal(image_writer_data(w, piece, PIECE), 0);
	}
	uint64_t size = 0;
	char sm3[CRYPTO_SM3_HEX_LEN + 1];
	assert_int_equal(image_writer_finish(w, &size, sm3), 0);
	image_writer_free(w);
	assert_true(size > (uint64_t)RECORDS * IMAGE_RECORD_MAX);

	image_reader *r = NULL;
	int tag;
	size_t len, n, total = 0;
	assert_int_equal(image_reader_open(fd, &r), 0);
	assert_int_equal(image_reader_check_domain(r, domain_fp), 0);
	assert_int_equal(image_reader_verify_signature(r, NULL), 0);
	assert_int_equal(image_reader_unlock(r, domain_key), 0);
	for (;;) {
		assert_int_equal(image_reader_next_begin(r, &tag, &len), 0);
		if (tag == IMAGE_REC_END)
			break;
		assert_int_equal(tag, IMAGE_REC_DATA);
		assert_int_equal(len, IMAGE_RECORD_MAX);
		do {
			assert_int_equal(image_reader_read(r, piece, sizeof(piece), &n), 0);
			total += n;
		} while (n > 0);
	}
	assert_int_equal(total, (size_t)RECORDS * IMAGE_RECORD_MAX);
	assert_int_equal(piece[0], 0x5a);
	image_reader_free(r);
	close(fd);
	long grown = peak_rss_kib() - before;
	print_message("# peak RSS grew by %ld KiB for a %llu-byte image\n", grown,
		      (unsigned long long)size);
	assert_true(grown < 16 * 1024);
}

/* ---- domain and keys ---- */

static void test_domain(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = small_image(IMAGE_BACKUP, &len);
	assert_int_equal(import_code(b, len, domain_fp, domain_key, NULL), 0);
	assert_int_equal(import_code(b, len, other_domain_fp, domain_key, NULL), GMT_E_DOMAIN);
	/* The right fingerprint claimed, another domain key: nothing unwraps. */
	assert_int_equal(import_code(b, len, domain_fp, other_domain_key, NULL),
			 GMT_E_IMAGE_INTEGRITY);
	free(b);
}

/* An image made in another domain that claims this domain's fingerprint:
 * the header and signature are fine, the wrapped key is not ours. */
static void test_foreign_domain_claiming_ours(void **state)
{
	(void)state;
	int fd = tmp_fd();
	image_writer *w = new_writer(fd, IMAGE_VSM, attacker_key, other_domain_key, domain_fp);
	assert_int_equal(image_writer_record(w, IMAGE_REC_VSM, "{}", 2), 0);
	assert_int_equal(image_writer_finish(w, NULL, NULL), 0);
	image_writer_free(w);
	size_t len;
	uint8_t *b = bytes_from_fd(fd, &len);
	close(fd);
	assert_int_equal(import_code(b, len, domain_fp, domain_key, NULL), GMT_E_IMAGE_INTEGRITY);
	free(b);
}

/* ---- tampering ---- */

static size_t header_len(const uint8_t *b)
{
	return image_get_be32(b + 12);
}

/* Every byte of the file flipped in turn, by region:
 *   prologue                         4003
 *   header: JSON or a field broken   4003; domainFingerprint changed 4007;
 *           any other change that still parses            4001
 *   payload                          4001 (the signature covers it)
 *   trailer P, magic                 4003
 *   trailer MAC                      4001 (the signature covers it)
 *   trailer signature                4001 */
static void flip_every_byte(int type)
{
	size_t len;
	uint8_t *b = small_image(type, &len);
	size_t h = header_len(b), pay = IMAGE_PROLOGUE_LEN + h;
	const crypto_sm2_key *vendor = type == IMAGE_PACKAGE ? vendor_key : NULL;
	assert_int_equal(import_code(b, len, domain_fp, domain_key, vendor), 0);
	int seen4001 = 0, seen4003 = 0, seen4007 = 0;
	for (size_t i = 0; i < len; i++) {
		b[i] ^= 0x01;
		int e = import_code(b, len, domain_fp, domain_key, vendor);
		b[i] ^= 0x01;
		if (i < IMAGE_PROLOGUE_LEN) {
			assert_int_equal(e, GMT_E_IMAGE_FORMAT);
		} else if (i < pay) {
			if (e != GMT_E_IMAGE_FORMAT && e != GMT_E_IMAGE_SIGNATURE && e != GMT_E_DOMAIN)
				fail_msg("header byte %zu: code %d", i, e);
			seen4001 += e == GMT_E_IMAGE_SIGNATURE;
			seen4003 += e == GMT_E_IMAGE_FORMAT;
			seen4007 += e == GMT_E_DOMAIN;
		} else if (i < len - IMAGE_TRAILER_LEN) {
			assert_int_equal(e, GMT_E_IMAGE_SIGNATURE);
		} else if (i < len - IMAGE_TRAILER_MAC_FROM_END) {
			assert_int_equal(e, GMT_E_IMAGE_FORMAT);
		} else {
			assert_int_equal(e, GMT_E_IMAGE_SIGNATURE);
		}
	}
	assert_true(seen4001 > 0 && seen4003 > 0);
	assert_true(type == IMAGE_PACKAGE ? seen4007 == 0 : seen4007 > 0);
	free(b);
}

static void test_flip_vsm(void **state) { (void)state; flip_every_byte(IMAGE_VSM); }
static void test_flip_package(void **state) { (void)state; flip_every_byte(IMAGE_PACKAGE); }

/* Rewrites b's header with JSON text, keeping payload and trailer bytes and
 * fixing the layout fields; returns the new file. */
static uint8_t *replace_header(const uint8_t *b, size_t len, const char *text, size_t *ret_len)
{
	size_t h = header_len(b), t = strlen(text);
	size_t rest = len - IMAGE_PROLOGUE_LEN - h;
	uint8_t *n = malloc(IMAGE_PROLOGUE_LEN + t + rest);
	assert_non_null(n);
	memcpy(n, b, IMAGE_PROLOGUE_LEN);
	image_put_be32(n + 12, (uint32_t)t);
	memcpy(n + IMAGE_PROLOGUE_LEN, text, t);
	memcpy(n + IMAGE_PROLOGUE_LEN + t, b + IMAGE_PROLOGUE_LEN + h, rest);
	*ret_len = IMAGE_PROLOGUE_LEN + t + rest;
	return n;
}

/* Signs b (its first len-64 bytes) with key into its trailer. */
static void resign(uint8_t *b, size_t len, const crypto_sm2_key *key)
{
	uint8_t der[CRYPTO_SM2_SIG_DER_MAX];
	size_t derlen;
	assert_int_equal(crypto_sm2_sign(key, NULL, b, len - 64, der, &derlen), 0);
	assert_int_equal(crypto_sm2_sig_der_to_rs(der, derlen, b + len - 64, b + len - 32), 0);
}

/* An attacker without the domain key changes the payload and re-signs the
 * file with a device key of their own, named in the header: the layout,
 * domain and signature checks pass; the MAC (and the wrap) stop it. */
static void test_attacker_resigned(void **state)
{
	(void)state;
	size_t len, nlen;
	uint8_t *b = small_image(IMAGE_VSM, &len);
	json_error_t jerr;
	json_t *h = json_loadb((const char *)b + IMAGE_PROLOGUE_LEN, header_len(b), 0, &jerr);
	assert_non_null(h);
	char *pem, fp[65];
	size_t pemlen;
	assert_int_equal(crypto_sm2_public_pem(attacker_key, &pem, &pemlen), 0);
	assert_int_equal(crypto_sm2_fingerprint(attacker_key, fp), 0);
	json_object_set_new(h, "sourceDevicePublicKey", json_string(pem));
	json_object_set_new(h, "sourceDeviceFingerprint", json_string(fp));
	json_object_set_new(h, "sourceDeviceId", json_string("evil"));
	free(pem);
	char *text = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(h);
	uint8_t *n = replace_header(b, len, text, &nlen);
	free(text);
	/* Header changed only: the MAC covers it. */
	resign(n, nlen, attacker_key);
	assert_int_equal(import_code(n, nlen, domain_fp, domain_key, NULL), GMT_E_IMAGE_INTEGRITY);
	/* And a payload byte changed too. */
	n[nlen - IMAGE_TRAILER_LEN - 3] ^= 0x40;
	resign(n, nlen, attacker_key);
	assert_int_equal(import_code(n, nlen, domain_fp, domain_key, NULL), GMT_E_IMAGE_INTEGRITY);
	/* The signature alone is by the attacker and verifies. */
	int fd = fd_from_bytes(n, nlen);
	image_reader *r = NULL;
	assert_int_equal(image_reader_open(fd, &r), 0);
	assert_int_equal(image_reader_verify_signature(r, NULL), 0);
	assert_int_equal(image_reader_verify_signature(r, device_key), GMT_E_IMAGE_SIGNATURE);
	image_reader_free(r);
	close(fd);
	free(n);
	free(b);
}

/* Header fields: a table of bad headers, each re-signed so that only the
 * field is wrong; all 4003 at open (or 4003 at verification for the key). */
static void test_bad_headers(void **state)
{
	(void)state;
	static const struct {
		const char *field;
		const char *json; /* NULL: remove the field */
	} cases[] = {
		{"formatVersion", "2"}, {"formatVersion", "\"1\""}, {"type", "\"backup\""},
		{"type", "1"}, {"imageId", "\"\""}, {"imageId", "\"a b\""},
		{"imageId", "\"0123456789012345678901234567890123456789x\""},
		{"createdAt", "-1"}, {"createdAt", "1.5"}, {"sourceDeviceId", "null"},
		{"sourceDeviceFingerprint", "\"ABC\""}, {"algorithms", "{\"cipher\":\"AES\"}"},
		{"contents", "[]"}, {"domainFingerprint", "\"00\""}, {"encryption", "{}"},
		{"encryption", "{\"iv\":\"00\",\"wrappedKey\":\"\"}"}, {"extra", "1"},
		{"formatVersion", NULL}, {"encryption", NULL}, {"contents", NULL},
	};
	size_t len;
	uint8_t *b = small_image(IMAGE_VSM, &len);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_error_t jerr;
		json_t *h = json_loadb((const char *)b + IMAGE_PROLOGUE_LEN, header_len(b), 0, &jerr);
		assert_non_null(h);
		if (cases[i].json)
			json_object_set_new(h, cases[i].field,
					    json_loads(cases[i].json, JSON_DECODE_ANY, &jerr));
		else
			json_object_del(h, cases[i].field);
		char *text = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(h);
		size_t nlen;
		uint8_t *n = replace_header(b, len, text, &nlen);
		free(text);
		resign(n, nlen, device_key);
		int e = import_code(n, nlen, domain_fp, domain_key, NULL);
		if (e != GMT_E_IMAGE_FORMAT)
			fail_msg("case %zu (%s): code %d", i, cases[i].field, e);
		free(n);
	}
	/* A key that is not the one the fingerprint names: 4003; not PEM: 4003. */
	const char *bad_keys[] = {"\"not a key\"", NULL};
	char *pem;
	size_t pemlen;
	assert_int_equal(crypto_sm2_public_pem(attacker_key, &pem, &pemlen), 0);
	for (int k = 0; k < 2; k++) {
		json_error_t jerr;
		json_t *h = json_loadb((const char *)b + IMAGE_PROLOGUE_LEN, header_len(b), 0, &jerr);
		json_object_set_new(h, "sourceDevicePublicKey",
				    bad_keys[k] ? json_loads(bad_keys[k], JSON_DECODE_ANY, &jerr)
						: json_string(pem));
		char *text = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(h);
		size_t nlen;
		uint8_t *n = replace_header(b, len, text, &nlen);
		free(text);
		resign(n, nlen, k ? attacker_key : device_key);
		assert_int_equal(import_code(n, nlen, domain_fp, domain_key, NULL), GMT_E_IMAGE_FORMAT);
		free(n);
	}
	free(pem);
	/* Not JSON, duplicate keys, too deep. */
	const char *texts[] = {"{\"a\":", "{\"a\":1,\"a\":1}", "[1]",
			       "{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}"};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		size_t nlen;
		uint8_t *n = replace_header(b, len, texts[i], &nlen);
		resign(n, nlen, device_key);
		assert_int_equal(import_code(n, nlen, domain_fp, domain_key, NULL), GMT_E_IMAGE_FORMAT);
		free(n);
	}
	free(b);
}

static void test_prologue_fields(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = small_image(IMAGE_CHSM, &len);
	static const struct {
		size_t off;
		uint8_t value;
	} cases[] = {{8, 0}, {8, 5}, {8, 255}, {8, IMAGE_BACKUP}, {9, 0}, {9, 2}, {10, 1},
		     {11, 1}, {12, 0x80}, {13, 0x10}, {14, 0xff}, {15, 0}, {15, 1}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t old = b[cases[i].off];
		b[cases[i].off] = cases[i].value;
		assert_int_equal(import_code(b, len, domain_fp, domain_key, NULL), GMT_E_IMAGE_FORMAT);
		b[cases[i].off] = old;
	}
	free(b);
}

static void test_truncated(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = small_image(IMAGE_VSM, &len);
	for (size_t n = 0; n < len; n++) {
		int e = import_code(b, n, domain_fp, domain_key, NULL);
		if (e != GMT_E_IMAGE_FORMAT && e != GMT_E_IMAGE_SIGNATURE && e != GMT_E_IMAGE_INTEGRITY)
			fail_msg("truncated to %zu: code %d", n, e);
	}
	free(b);
}

static void test_trailing_garbage(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = small_image(IMAGE_VSM, &len);
	uint8_t *n = malloc(len + IMAGE_TRAILER_LEN);
	assert_non_null(n);
	memcpy(n, b, len);
	for (size_t extra = 1; extra <= IMAGE_TRAILER_LEN; extra += 37) {
		memset(n + len, 'x', extra);
		assert_int_equal(import_code(n, len + extra, domain_fp, domain_key, NULL),
				 GMT_E_IMAGE_FORMAT);
	}
	/* A copy of the trailer appended: the layout fields no longer agree. */
	memcpy(n + len, b + len - IMAGE_TRAILER_LEN, IMAGE_TRAILER_LEN);
	assert_int_equal(import_code(n, len + IMAGE_TRAILER_LEN, domain_fp, domain_key, NULL),
			 GMT_E_IMAGE_FORMAT);
	free(n);
	free(b);
}

/* ---- record framing (valid MAC and signature, bad records) ---- */

struct framing_case {
	const char *name;
	const uint8_t *raw;
	size_t rawlen;
	bool omit_end;
	int code;
};

static void test_framing(void **state)
{
	(void)state;
	static const uint8_t beyond[] = {7, 0, 0, 3, 0xe8, 1, 2, 3};
	static const uint8_t too_long[] = {7, 0, 0x10, 0, 1};
	static const uint8_t end_not_empty[] = {255, 0, 0, 0, 1, 0};
	static const uint8_t after_end[] = {255, 0, 0, 0, 0, 'x', 'y'};
	static const uint8_t two_ends[] = {255, 0, 0, 0, 0, 255, 0, 0, 0, 0};
	static const uint8_t partial[] = {7, 0};
	static const uint8_t tag0[] = {0, 0, 0, 0, 0};
	static const uint8_t ok[] = {7, 0, 0, 0, 2, 'o', 'k'};
	static const struct framing_case cases[] = {
		{"length beyond the payload", beyond, sizeof(beyond), true, GMT_E_IMAGE_FORMAT},
		{"length over the limit", too_long, sizeof(too_long), true, GMT_E_IMAGE_FORMAT},
		{"END not empty", end_not_empty, sizeof(end_not_empty), true, GMT_E_IMAGE_FORMAT},
		{"data after END", after_end, sizeof(after_end), true, GMT_E_IMAGE_INTEGRITY},
		{"two END records", two_ends, sizeof(two_ends), true, GMT_E_IMAGE_INTEGRITY},
		{"partial record header", partial, sizeof(partial), true, GMT_E_IMAGE_INTEGRITY},
		{"tag 0", tag0, sizeof(tag0), false, GMT_E_IMAGE_FORMAT},
		{"missing END", ok, sizeof(ok), true, GMT_E_IMAGE_INTEGRITY},
		{"empty payload", NULL, 0, true, GMT_E_IMAGE_INTEGRITY},
		{"END after a record", ok, sizeof(ok), false, 0},
	};
	for (int type = IMAGE_VSM; type <= IMAGE_PACKAGE; type += 3) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			int fd = tmp_fd();
			image_writer *w = new_writer(fd, type, signer_of(type), domain_key, domain_fp);
			if (cases[i].rawlen)
				assert_int_equal(image_writer_raw(w, cases[i].raw, cases[i].rawlen), 0);
			if (cases[i].omit_end)
				image_writer_omit_end(w);
			assert_int_equal(image_writer_finish(w, NULL, NULL), 0);
			image_writer_free(w);
			size_t len;
			uint8_t *b = bytes_from_fd(fd, &len);
			close(fd);
			int e = import_code(b, len, domain_fp, domain_key, vendor_key);
			if (e != cases[i].code)
				fail_msg("%s (type %d): code %d, want %d", cases[i].name, type, e,
					 cases[i].code);
			free(b);
		}
	}
}

/* An error in the records is sticky. */
static void test_framing_sticky(void **state)
{
	(void)state;
	static const uint8_t beyond[] = {7, 0, 0, 3, 0xe8, 1, 2, 3};
	int fd = tmp_fd();
	image_writer *w = new_writer(fd, IMAGE_BACKUP, device_key, domain_key, domain_fp);
	assert_int_equal(image_writer_raw(w, beyond, sizeof(beyond)), 0);
	image_writer_omit_end(w);
	assert_int_equal(image_writer_finish(w, NULL, NULL), 0);
	image_writer_free(w);
	image_reader *r = NULL;
	int tag;
	size_t n;
	uint8_t *v;
	assert_int_equal(image_reader_open(fd, &r), 0);
	assert_int_equal(image_reader_unlock(r, domain_key), 0);
	assert_int_equal(image_reader_next_begin(r, &tag, &n), GMT_E_IMAGE_FORMAT);
	assert_int_equal(image_reader_next(r, &tag, &v, &n), GMT_E_IMAGE_FORMAT);
	image_reader_free(r);
	close(fd);
}

/* ---- packages and misuse ---- */

static void test_package(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = small_image(IMAGE_PACKAGE, &len);
	assert_int_equal(import_code(b, len, NULL, NULL, vendor_key), 0);
	assert_int_equal(import_code(b, len, NULL, NULL, attacker_key), GMT_E_IMAGE_SIGNATURE);
	/* The MAC field of a package is zero. */
	static const uint8_t zero[IMAGE_MAC_LEN];
	assert_memory_equal(b + len - IMAGE_TRAILER_MAC_FROM_END, zero, sizeof(zero));

	int fd = fd_from_bytes(b, len);
	image_reader *r = NULL;
	int tag;
	size_t n;
	uint8_t *v, buf[4];
	assert_int_equal(image_reader_open(fd, &r), 0);
	assert_int_equal(image_reader_type(r), IMAGE_PACKAGE);
	assert_int_equal(image_reader_next(r, &tag, &v, &n), GMT_E_INTERNAL);
	assert_int_equal(image_reader_read(r, buf, sizeof(buf), &n), GMT_E_INTERNAL);
	assert_int_equal(image_reader_check_domain(r, domain_fp), GMT_E_DOMAIN);
	assert_int_equal(image_reader_unlock(r, domain_key), GMT_E_INTERNAL);
	/* The key in the header proves nothing: records stay closed. */
	assert_int_equal(image_reader_verify_signature(r, NULL), 0);
	assert_int_equal(image_reader_next(r, &tag, &v, &n), GMT_E_INTERNAL);
	assert_int_equal(image_reader_verify_signature(r, attacker_key), GMT_E_IMAGE_SIGNATURE);
	assert_int_equal(image_reader_next(r, &tag, &v, &n), GMT_E_INTERNAL);
	assert_int_equal(image_reader_verify_signature(r, vendor_key), 0);
	assert_int_equal(image_reader_next(r, &tag, &v, &n), 0);
	assert_int_equal(tag, IMAGE_REC_VSM);
	crypto_free_secret(v, n);
	image_reader_free(r);
	close(fd);
	free(b);
}

static void test_records_need_unlock(void **state)
{
	(void)state;
	size_t len;
	uint8_t *b = small_image(IMAGE_CHSM, &len);
	int fd = fd_from_bytes(b, len);
	image_reader *r = NULL;
	int tag;
	size_t n;
	uint8_t *v;
	assert_int_equal(image_reader_open(fd, &r), 0);
	assert_int_equal(image_reader_verify_signature(r, NULL), 0);
	assert_int_equal(image_reader_verify_signature(r, device_key), 0);
	assert_int_equal(image_reader_next(r, &tag, &v, &n), GMT_E_INTERNAL);
	assert_int_equal(image_reader_next_begin(r, &tag, &n), GMT_E_INTERNAL);
	assert_int_equal(image_reader_unlock(r, other_domain_key), GMT_E_IMAGE_INTEGRITY);
	assert_int_equal(image_reader_next(r, &tag, &v, &n), GMT_E_INTERNAL);
	assert_int_equal(image_reader_unlock(r, domain_key), 0);
	assert_int_equal(image_reader_next(r, &tag, &v, &n), 0);
	crypto_free_secret(v, n);
	image_reader_free(r);
	close(fd);
	free(b);
}

static void test_writer_misuse(void **state)
{
	(void)state;
	json_t *c = summary(IMAGE_VSM);
	struct image_signer s = {"chsm-1", device_key};
	image_writer *w = NULL;
	int fd = tmp_fd();
	assert_int_equal(image_writer_new(fd, 0, c, &s, domain_key, domain_fp, &w), GMT_E_INTERNAL);
	assert_int_equal(image_writer_new(fd, 5, c, &s, domain_key, domain_fp, &w), GMT_E_INTERNAL);
	assert_int_equal(image_writer_new(fd, IMAGE_VSM, c, &s, NULL, domain_fp, &w), GMT_E_INTERNAL);
	assert_int_equal(image_writer_new(fd, IMAGE_VSM, c, &s, domain_key, "ab", &w),
			 GMT_E_INTERNAL);
	assert_int_equal(image_writer_new(fd, IMAGE_PACKAGE, c, &s, domain_key, domain_fp, &w),
			 GMT_E_INTERNAL);
	assert_int_equal(image_writer_new(fd, IMAGE_VSM, NULL, &s, domain_key, domain_fp, &w),
			 GMT_E_INTERNAL);
	crypto_sm2_key *pub = NULL;
	char *pem;
	size_t pemlen;
	assert_int_equal(crypto_sm2_public_pem(device_key, &pem, &pemlen), 0);
	assert_int_equal(crypto_sm2_load_public_pem(pem, pemlen, &pub), 0);
	free(pem);
	struct image_signer ps = {"chsm-1", pub};
	assert_int_equal(image_writer_new(fd, IMAGE_VSM, c, &ps, domain_key, domain_fp, &w),
			 GMT_E_INTERNAL);
	crypto_sm2_key_free(pub);
	assert_null(w);
	/* A header over IMAGE_HEADER_MAX. */
	json_t *huge = json_object();
	char *blob = malloc(IMAGE_HEADER_MAX + 1);
	memset(blob, 'a', IMAGE_HEADER_MAX);
	blob[IMAGE_HEADER_MAX] = '\0';
	json_object_set_new(huge, "blob", json_string(blob));
	free(blob);
	assert_int_equal(image_writer_new(fd, IMAGE_VSM, huge, &s, domain_key, domain_fp, &w),
			 GMT_E_INTERNAL);
	json_decref(huge);

	w = new_writer(fd, IMAGE_VSM, device_key, domain_key, domain_fp);
	uint8_t x[8] = {0};
	assert_int_equal(image_writer_record(w, IMAGE_REC_END, NULL, 0), GMT_E_INTERNAL);
	image_writer_free(w);
	w = new_writer(fd, IMAGE_VSM, device_key, domain_key, domain_fp);
	assert_int_equal(image_writer_record(w, 7, x, IMAGE_RECORD_MAX + 1), GMT_E_INTERNAL);
	image_writer_free(w);
	w = new_writer(fd, IMAGE_VSM, device_key, domain_key, domain_fp);
	assert_int_equal(image_writer_record_begin(w, 7, 4), 0);
	assert_int_equal(image_writer_data(w, x, 5), GMT_E_INTERNAL);
	image_writer_free(w);
	w = new_writer(fd, IMAGE_VSM, device_key, domain_key, domain_fp);
	assert_int_equal(image_writer_record_begin(w, 7, 4), 0);
	assert_int_equal(image_writer_data(w, x, 3), 0);
	assert_int_equal(image_writer_finish(w, NULL, NULL), GMT_E_INTERNAL);
	image_writer_free(w);
	close(fd);
	fd = tmp_fd();
	w = new_writer(fd, IMAGE_VSM, device_key, domain_key, domain_fp);
	assert_int_equal(image_writer_finish(w, NULL, NULL), 0);
	assert_int_equal(image_writer_record(w, 7, x, 1), GMT_E_INTERNAL);
	assert_int_equal(image_writer_finish(w, NULL, NULL), GMT_E_INTERNAL);
	image_writer_free(w);
	image_writer_free(NULL);
	image_reader_free(NULL);
	close(fd);
	/* A write failure is 5001. */
	int ro = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(ro >= 0);
	w = NULL;
	assert_int_equal(image_writer_new(ro, IMAGE_VSM, c, &s, domain_key, domain_fp, &w), 0);
	assert_int_equal(image_writer_finish(w, NULL, NULL), GMT_E_STORAGE);
	image_writer_free(w);
	close(ro);
	json_decref(c);
	/* The reader refuses what is not a regular file. */
	image_reader *r = NULL;
	int dirfd = open("/tmp", O_RDONLY | O_CLOEXEC);
	assert_int_equal(image_reader_open(dirfd, &r), GMT_E_IMAGE_FORMAT);
	close(dirfd);
}

/* ---- interoperability ---- */

/* The trailer signature verifies with the openssl CLI over the first F-64
 * bytes, and the writer's sm3 is what `openssl dgst -sm3` says. */
static void test_openssl_interop(void **state)
{
	(void)state;
	char *dir = cli_tmpdir();
	for (int type = IMAGE_VSM; type <= IMAGE_PACKAGE; type++) {
		int fd = tmp_fd();
		const crypto_sm2_key *key = signer_of(type);
		image_writer *w = new_writer(fd, type, key, domain_key, domain_fp);
		uint8_t data[3000];
		fill(data, sizeof(data), 9);
		assert_int_equal(image_writer_record(w, IMAGE_REC_DATA, data, sizeof(data)), 0);
		char sm3[65];
		assert_int_equal(image_writer_finish(w, NULL, sm3), 0);
		image_writer_free(w);
		size_t len;
		uint8_t *b = bytes_from_fd(fd, &len);
		close(fd);
		uint8_t der[CRYPTO_SM2_SIG_DER_MAX];
		size_t derlen;
		assert_int_equal(crypto_sm2_sig_rs_to_der(b + len - 64, b + len - 32, der, &derlen), 0);
		char *pem;
		size_t pemlen;
		assert_int_equal(crypto_sm2_public_pem(key, &pem, &pemlen), 0);
		cli_write(dir, "pub.pem", pem, pemlen);
		free(pem);
		cli_write(dir, "sig.der", der, derlen);
		cli_write(dir, "signed.bin", b, len - 64);
		cli_write(dir, "image.bin", b, len);
		assert_int_equal(cli_run(dir, "openssl dgst -sm3 -verify pub.pem -sigopt "
					      "distid:1234567812345678 -signature sig.der signed.bin"),
				 0);
		assert_int_equal(cli_run(dir, "openssl dgst -sm3 -r image.bin | cut -c1-64 > d.txt"),
				 0);
		size_t dlen;
		uint8_t *d = cli_read(dir, "d.txt", &dlen);
		assert_true(dlen >= 64);
		assert_memory_equal(d, sm3, 64);
		free(d);
		/* One flipped bit and openssl refuses it too. */
		b[IMAGE_PROLOGUE_LEN + 3] ^= 1;
		cli_write(dir, "signed.bin", b, len - 64);
		assert_int_not_equal(cli_run(dir, "openssl dgst -sm3 -verify pub.pem -sigopt "
						  "distid:1234567812345678 -signature sig.der "
						  "signed.bin"),
				     0);
		free(b);
	}
	cli_tmpdir_free(dir);
}

/* ---- chsm-image ---- */

static int tool(const char *dir, const char *args)
{
	return cli_run(dir, "'%s' %s", CHSM_IMAGE_BIN, args);
}

static bool out_contains(const char *dir, const char *s)
{
	size_t len;
	uint8_t *out = cli_read(dir, "out.txt", &len);
	bool found = strstr((char *)out, s) != NULL;
	if (!found)
		print_message("out.txt:\n%s\n", (char *)out);
	free(out);
	return found;
}

static void test_tool(void **state)
{
	(void)state;
	char *dir = cli_tmpdir();
	size_t len;
	uint8_t *b = small_image(IMAGE_BACKUP, &len);
	cli_write(dir, "backup.img", b, len);
	char fp[65], sm3[65], line[128];
	assert_int_equal(crypto_sm2_fingerprint(device_key, fp), 0);
	assert_int_equal(crypto_sm3_hex(b, len, sm3), 0);

	assert_int_equal(tool(dir, "inspect backup.img"), 0);
	snprintf(line, sizeof(line), "signature: valid (device %s", fp);
	assert_true(out_contains(dir, line));
	assert_true(out_contains(dir, "type: 3 (backup)"));
	assert_true(out_contains(dir, "\"domainFingerprint\": \""));
	snprintf(line, sizeof(line), "size: %zu\n", len);
	assert_true(out_contains(dir, line));

	assert_int_equal(tool(dir, "sm3 backup.img"), 0);
	snprintf(line, sizeof(line), "%s\n", sm3);
	assert_true(out_contains(dir, line));

	b[len - 90] ^= 1; /* in the MAC */
	cli_write(dir, "bad.img", b, len);
	assert_int_equal(tool(dir, "inspect bad.img"), 1);
	assert_true(out_contains(dir, "signature: invalid (4001"));
	b[len - 90] ^= 1;
	b[0] = 'X';
	cli_write(dir, "bad.img", b, len);
	assert_int_equal(tool(dir, "inspect bad.img"), 1);
	assert_true(out_contains(dir, "layout: invalid (4003"));
	free(b);

	b = small_image(IMAGE_PACKAGE, &len);
	cli_write(dir, "pkg.img", b, len);
	free(b);
	char *pem;
	size_t pemlen;
	assert_int_equal(crypto_sm2_public_pem(vendor_key, &pem, &pemlen), 0);
	cli_write(dir, "vendor.pem", pem, pemlen);
	free(pem);
	assert_int_equal(crypto_sm2_public_pem(attacker_key, &pem, &pemlen), 0);
	cli_write(dir, "other.pem", pem, pemlen);
	free(pem);
	assert_int_equal(tool(dir, "inspect --vendor-key vendor.pem pkg.img"), 0);
	assert_true(out_contains(dir, "signature: valid (vendor"));
	assert_int_equal(tool(dir, "inspect --vendor-key other.pem pkg.img"), 1);
	assert_true(out_contains(dir, "signature: invalid (4001"));

	assert_int_equal(tool(dir, ""), 2);
	assert_int_equal(tool(dir, "inspect"), 2);
	assert_int_equal(tool(dir, "inspect a b"), 2);
	assert_int_equal(tool(dir, "frobnicate x"), 2);
	assert_int_equal(tool(dir, "inspect --vendor-key nonexistent.pem pkg.img"), 2);
	assert_int_equal(tool(dir, "inspect missing.img"), 1);
	cli_tmpdir_free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_vsm),
		cmocka_unit_test(test_round_trip_chsm),
		cmocka_unit_test(test_round_trip_backup),
		cmocka_unit_test(test_round_trip_package),
		cmocka_unit_test(test_skip_value),
		cmocka_unit_test(test_memory_flat),
		cmocka_unit_test(test_domain),
		cmocka_unit_test(test_foreign_domain_claiming_ours),
		cmocka_unit_test(test_flip_vsm),
		cmocka_unit_test(test_flip_package),
		cmocka_unit_test(test_attacker_resigned),
		cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_prologue_fields),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_trailing_garbage),
		cmocka_unit_test(test_framing),
		cmocka_unit_test(test_framing_sticky),
		cmocka_unit_test(test_package),
		cmocka_unit_test(test_records_need_unlock),
		cmocka_unit_test(test_writer_misuse),
		cmocka_unit_test(test_openssl_interop),
		cmocka_unit_test(test_tool),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
