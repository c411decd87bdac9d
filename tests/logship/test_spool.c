/* Unit tests of logship/spool: order, acknowledgement, restart, torn
 * tails, the bound and its dropped counter. */
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

#include "logship/spool.h"

static char dir[64];

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/test_spool.XXXXXX");
	assert_non_null(mkdtemp(dir));
	strcat(dir, "/s");
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)strlen(dir) - 2, dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void append_n(logship_spool *sp, int from, int to)
{
	char rec[32];
	for (int i = from; i <= to; i++) {
		int n = snprintf(rec, sizeof(rec), "record %d", i);
		assert_int_equal(spool_append(sp, rec, (size_t)n), 0);
	}
}

/* Peeks and acknowledges records from..to, checking their order. */
static void drain(logship_spool *sp, int from, int to, size_t per_batch)
{
	int next = from;
	while (next <= to) {
		struct spool_batch b;
		size_t want = (size_t)(to - next + 1) < per_batch ? (size_t)(to - next + 1) : per_batch;
		assert_int_equal(spool_peek(sp, want, 1 << 20, &b), 0);
		assert_true(b.n > 0);
		for (size_t i = 0; i < b.n; i++) {
			char rec[32];
			snprintf(rec, sizeof(rec), "record %d", next++);
			assert_string_equal(b.rec[i].data, rec);
			if (i > 0)
				assert_true(b.rec[i].seq == b.rec[i - 1].seq + 1);
		}
		assert_int_equal(spool_ack(sp, &b, b.n), 0);
		spool_batch_free(&b);
	}
}

static void assert_empty(logship_spool *sp)
{
	struct spool_batch b;
	assert_int_equal(spool_peek(sp, 10, 1 << 20, &b), 0);
	assert_int_equal(b.n, 0);
}

static void test_order_ack_restart(void **state)
{
	logship_spool *sp = NULL;
	assert_int_equal(spool_open(dir, 1 << 20, &sp), 0);
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	append_n(sp, 1, 10);
	struct spool_batch b;
	assert_int_equal(spool_peek(sp, 4, 1 << 20, &b), 0);
	assert_int_equal(b.n, 4);
	assert_string_equal(b.rec[0].data, "record 1");
	assert_true(b.rec[0].seq == 1);
	/* Peeking does not consume; a partial ack moves past its records only. */
	assert_int_equal(spool_ack(sp, &b, 3), 0);
	spool_batch_free(&b);
	uint64_t pending, bytes;
	spool_usage(sp, &pending, &bytes);
	assert_int_equal(pending, 7);
	spool_close(sp);

	/* After a restart: the same position and the sequence goes on. */
	assert_int_equal(spool_open(dir, 1 << 20, &sp), 0);
	assert_int_equal(spool_peek(sp, 1, 1 << 20, &b), 0);
	assert_int_equal(b.n, 1);
	assert_string_equal(b.rec[0].data, "record 4");
	assert_true(b.rec[0].seq == 4);
	spool_batch_free(&b);
	append_n(sp, 11, 12);
	assert_int_equal(spool_peek(sp, 100, 1 << 20, &b), 0);
	assert_int_equal(b.n, 9);
	assert_true(b.rec[8].seq == 12);
	spool_batch_free(&b);
	drain(sp, 4, 12, 3);
	assert_empty(sp);
	spool_usage(sp, &pending, &bytes);
	assert_int_equal(pending, 0);
	/* Bad lengths are refused and not counted. */
	assert_int_equal(spool_append(sp, "x", 0), -EINVAL);
	assert_int_equal(spool_dropped(sp), 0);
	spool_close(sp);
}

static void test_segments_keep_order(void **state)
{
	logship_spool *sp = NULL;
	/* 64 KiB: segments of 16 KiB, ~700 records each. */
	assert_int_equal(spool_open(dir, 64 * 1024, &sp), 0);
	append_n(sp, 1, 2000);
	drain(sp, 1, 1000, 7);
	append_n(sp, 2001, 2500);
	spool_close(sp);
	assert_int_equal(spool_open(dir, 64 * 1024, &sp), 0);
	struct spool_batch b;
	assert_int_equal(spool_peek(sp, 1, 1 << 20, &b), 0);
	assert_string_equal(b.rec[0].data, "record 1001");
	spool_batch_free(&b);
	drain(sp, 1001, 2500, 100);
	assert_empty(sp);
	/* Delivered segments are gone: one (the active) is left. */
	int segs = 0;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "ls '%s' | grep -c '\\.seg$'", dir);
	FILE *p = popen(cmd, "r");
	assert_int_equal(fscanf(p, "%d", &segs), 1);
	pclose(p);
	assert_int_equal(segs, 1);
	spool_close(sp);
}

static void last_segment(char *out, size_t cap)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "ls '%s'/*.seg | tail -n 1", dir);
	FILE *p = popen(cmd, "r");
	assert_non_null(fgets(out, (int)cap, p));
	pclose(p);
	out[strcspn(out, "\n")] = '\0';
}

static void test_torn_tail(void **state)
{
	logship_spool *sp = NULL;
	char seg[256];
	assert_int_equal(spool_open(dir, 1 << 20, &sp), 0);
	append_n(sp, 1, 3);
	spool_close(sp);
	/* A crash in the middle of a write: half a header. */
	last_segment(seg, sizeof(seg));
	int fd = open(seg, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "\x20\x00\x00\x00\x11\x22", 6), 6);
	close(fd);
	assert_int_equal(spool_open(dir, 1 << 20, &sp), 0);
	append_n(sp, 4, 4);
	spool_close(sp);
	/* A torn record: full header, half the bytes. */
	struct stat st;
	assert_int_equal(stat(seg, &st), 0);
	off_t good = st.st_size;
	fd = open(seg, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "\x10\x00\x00\x00" "abcd" "\x05\x00\x00\x00\x00\x00\x00\x00" "rec", 19), 19);
	close(fd);
	assert_int_equal(spool_open(dir, 1 << 20, &sp), 0);
	assert_int_equal(stat(seg, &st), 0);
	assert_int_equal(st.st_size, good);
	spool_close(sp);
	/* A damaged last record (bit flip): its CRC no longer matches. */
	fd = open(seg, O_RDWR);
	char c;
	assert_int_equal(pread(fd, &c, 1, good - 1), 1);
	c ^= 1;
	assert_int_equal(pwrite(fd, &c, 1, good - 1), 1);
	close(fd);
	assert_int_equal(spool_open(dir, 1 << 20, &sp), 0);
	append_n(sp, 4, 5);
	drain(sp, 1, 5, 2);
	assert_empty(sp);
	spool_close(sp);
}

static void test_bound_and_dropped(void **state)
{
	logship_spool *sp = NULL;
	assert_int_equal(spool_open(dir, 1000, &sp), -EINVAL);
	assert_int_equal(spool_open(dir, 16 * 1024, &sp), 0);
	char rec[1000];
	memset(rec, 'x', sizeof(rec));
	int ok = 0, full = 0;
	for (int i = 0; i < 40; i++) {
		int r = spool_append(sp, rec, sizeof(rec));
		if (r == 0)
			ok++;
		else {
			assert_int_equal(r, -ENOSPC);
			full++;
		}
	}
	/* 16 records of 1016 bytes fit in 16 KiB, not 17. */
	assert_int_equal(ok, 16);
	assert_int_equal(full, 24);
	assert_int_equal(spool_dropped(sp), 24);
	uint64_t pending, bytes;
	spool_usage(sp, &pending, &bytes);
	assert_int_equal(pending, 16);
	assert_true(bytes <= 16 * 1024);
	/* Nothing older was evicted: the first 16 are all there. */
	struct spool_batch b;
	assert_int_equal(spool_peek(sp, 100, 1 << 20, &b), 0);
	assert_int_equal(b.n, 16);
	assert_true(b.rec[0].seq == 1 && b.rec[15].seq == 16);
	/* Delivering frees whole segments, and appends fit again. */
	assert_int_equal(spool_ack(sp, &b, b.n), 0);
	spool_batch_free(&b);
	assert_int_equal(spool_append(sp, rec, sizeof(rec)), 0);
	assert_int_equal(spool_append(sp, rec, sizeof(rec)), 0);
	assert_int_equal(spool_peek(sp, 100, 1 << 20, &b), 0);
	assert_int_equal(b.n, 2);
	/* Sequence numbers are never reused by dropped records. */
	assert_true(b.rec[0].seq == 17);
	spool_batch_free(&b);
	spool_close(sp);
}

static void test_crc32(void **state)
{
	/* The standard check value of CRC-32/ISO-HDLC. */
	assert_true(spool_crc32(0, "123456789", 9) == 0xCBF43926u);
	assert_true(spool_crc32(spool_crc32(0, "1234", 4), "56789", 5) == 0xCBF43926u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_order_ack_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segments_keep_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bound_and_dropped, setup, teardown),
		cmocka_unit_test(test_crc32),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
