/* Unit tests of common/util. */
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

#include "common/siphash.h"
#include "common/util.h"

static void test_hex_roundtrip(void **state)
{
	const uint8_t in[] = {0x00, 0x01, 0xab, 0xff};
	char hex[9];
	uint8_t out[4];
	chsm_hex_encode(in, sizeof(in), hex);
	assert_string_equal(hex, "0001abff");
	assert_int_equal(chsm_hex_decode("0001ABff", 8, out, 4), 0);
	assert_memory_equal(in, out, 4);
	assert_int_equal(chsm_hex_decode("0001abf", 7, out, 4), -EINVAL);
	assert_int_equal(chsm_hex_decode("0001abfg", 8, out, 4), -EINVAL);
}

static void test_parse_u64(void **state)
{
	uint64_t v = 7;
	assert_int_equal(chsm_parse_u64("0", 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(chsm_parse_u64("18446744073709551615", UINT64_MAX, &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(chsm_parse_u64("18446744073709551616", UINT64_MAX, &v), -ERANGE);
	assert_int_equal(chsm_parse_u64("11", 10, &v), -ERANGE);
	static const char *bad[] = {"", "-1", "+1", " 1", "1 ", "0x10", "1.0", "abc"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(chsm_parse_u64(bad[i], UINT64_MAX, &v), -EINVAL);
	assert_int_equal(chsm_parse_u64(NULL, 1, &v), -EINVAL);
}

static void test_charset(void **state)
{
	assert_true(chsm_str_charset("abcXYZ019", 9, NULL));
	assert_true(chsm_str_charset("a_b-c", 5, "_-"));
	assert_false(chsm_str_charset("a b", 3, "_-"));
	assert_false(chsm_str_charset("a\0b", 3, "_-"));
	assert_false(chsm_str_charset("a/b", 3, "_-."));
}

static void test_file_atomic(void **state)
{
	char dir[] = "/tmp/chsm-util-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/f", dir);
	assert_int_equal(chsm_write_file_atomic(path, "hello", 5, 0600), 0);
	assert_int_equal(chsm_write_file_atomic(path, "world!", 6, 0600), 0);
	char *data = NULL;
	size_t len = 0;
	assert_int_equal(chsm_read_file(path, 100, &data, &len), 0);
	assert_int_equal(len, 6);
	assert_string_equal(data, "world!");
	free(data);
	assert_int_equal(chsm_read_file(path, 3, &data, &len), -EFBIG);
	assert_int_equal(chsm_read_file(dir, 100, &data, &len), -EINVAL);
	unlink(path);
	rmdir(dir);
}

/* The reference vectors of the SipHash paper (key 00..0f, message 00..). */
static void test_siphash(void **state)
{
	(void)state;
	uint8_t key[CHSM_SIPHASH_KEY_LEN], msg[15];
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 15; i++)
		msg[i] = (uint8_t)i;
	assert_true(chsm_siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
	assert_true(chsm_siphash24(key, msg, 15) == 0xa129ca6149be45e5ULL);
	assert_true(chsm_siphash24(key, msg, 8) != chsm_siphash24(key, msg, 7));
}

static void test_time(void **state)
{
	int64_t a = chsm_monotonic_ms(), b = chsm_monotonic_ms();
	assert_true(b >= a);
	assert_true(chsm_now_ms() > 1600000000000LL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex_roundtrip), cmocka_unit_test(test_parse_u64),
		cmocka_unit_test(test_charset),       cmocka_unit_test(test_file_atomic),
		cmocka_unit_test(test_time), cmocka_unit_test(test_siphash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
