/*
 * test_api_status.c: the 7.3.2 / 7.2.3 VSM status text and the cache of
 * the VSM processes' statistics files (src/api/h_vsm.c).
 *
 * The text written directly equals what jansson prints for the object
 * 7.3.2 describes, on generated VSMs and figures. The cache never answers
 * older figures than the file holds when it is asked (with sync): after
 * every replacement by rename (and, watched, every rewrite in place), a
 * removal, a stale or malformed document, with and without the directory
 * watch, and after the watch is lost.
 */
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

#include "api/internal.h"
#include "common/util.h"
#include "proto/jsonw.h"

static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* The 7.3.2 object built with jansson, field by field as docs/api.md
 * lists them. */
static json_t *reference(const struct store_vsm *v, const char *digest,
			 const struct api_vsm_figures *f)
{
	json_t *o = json_object();
	json_object_set_new(o, "vsmId", json_string(v->id));
	json_object_set_new(o, "state", json_string(v->state));
	json_object_set_new(o, "uptimeSeconds", json_integer(f->uptime_seconds));
	json_object_set_new(o, "sessions", json_integer(f->sessions));
	json_object_set_new(o, "opsTotal", json_integer(f->ops_total));
	json_object_set_new(o, "ops", f->ops_text ? json_loads(f->ops_text, 0, NULL) : json_object());
	json_object_set_new(o, "cpuPercent", json_real((double)f->cpu_tenths / 10));
	json_object_set_new(o, "memoryMiB", json_real((double)f->memory_tenths / 10));
	json_object_set_new(o, "stateVersion", json_integer(v->state_version));
	json_object_set_new(o, "stateDigest", json_string(digest));
	json_t *err = v->last_error[0] ? json_string(v->last_error) : NULL;
	json_object_set_new(o, "lastError", err ? err : json_null());
	return o;
}

static void test_status_text_vs_jansson(void **state)
{
	(void)state;
	static const char *const states[] = {"running", "stopped", "fault", "starting"};
	static const char *const errors[] = {"", "exec failed: No such file", "a \"quoted\"\n\\",
					     "d\xc3\xa9j\xc3\xa0", "not UTF-8 \xff"};
	static const char *const op_names[] = {"sm2.sign", "sm4.mac", "random", "keygen"};
	uint64_t x = 0x1234567;
	for (int round = 0; round < 2000; round++) {
		struct store_vsm v;
		memset(&v, 0, sizeof(v));
		snprintf(v.id, sizeof(v.id), "vsm-%04d", round);
		snprintf(v.state, sizeof(v.state), "%s", states[round % 4]);
		snprintf(v.last_error, sizeof(v.last_error), "%s", errors[round % 5]);
		v.state_version = (int64_t)(next_rand(&x) % 100000);
		char digest[65];
		for (int i = 0; i < 64; i++)
			digest[i] = "0123456789abcdef"[next_rand(&x) % 16];
		digest[64] = '\0';
		struct api_vsm_figures f = {
			.uptime_seconds = (int64_t)(next_rand(&x) % 10000000),
			.sessions = (int64_t)(next_rand(&x) % 300),
			.ops_total = (int64_t)(next_rand(&x) % 100000000000LL),
			.cpu_tenths = round % 7 == 0 ? 0 : (int64_t)(next_rand(&x) % 20001),
			.memory_tenths = (int64_t)(next_rand(&x) % 100000),
		};
		json_t *ops = json_object();
		int nops = (int)(next_rand(&x) % 5);
		for (int i = 0; i < nops; i++)
			json_object_set_new(ops, op_names[i],
					    json_pack("{s:I,s:f}", "count",
						      (json_int_t)(next_rand(&x) % 1000000),
						      "rate", (double)(next_rand(&x) % 100000) / 10));
		f.ops_text = round % 3 == 0 ? NULL : json_dumps(ops, GMT_JSON_DUMP_FLAGS);
		json_decref(ops);

		struct gmt_jsonw w;
		char *text = NULL;
		size_t len = 0;
		gmt_jsonw_init(&w, 16);
		api_vsm_status_write(&w, &v, digest, &f);
		assert_int_equal(gmt_jsonw_finish(&w, &text, &len), 0);
		json_t *ref = reference(&v, digest, &f);
		char *want = json_dumps(ref, GMT_JSON_DUMP_FLAGS);
		json_decref(ref);
		assert_string_equal(text, want);
		assert_int_equal(len, strlen(want));
		free(text);
		free(want);
		free(f.ops_text);
	}
}

/* A CHSM context with only what the statistics cache needs. */
struct fixture {
	struct api_ctx ctx;
	char run[600];
	char path[700];
};

static struct fixture *fixture_new(bool watch)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	char tmpl[] = "/tmp/test_api_status.XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	snprintf(fx->ctx.state_dir, sizeof(fx->ctx.state_dir), "%s", tmpl);
	snprintf(fx->run, sizeof(fx->run), "%s/run", tmpl);
	assert_int_equal(mkdir(fx->run, 0700), 0);
	assert_int_equal(api_vsm_stats_path(&fx->ctx, "v1", fx->path, sizeof(fx->path)), 0);
	assert_int_equal(api_stats_cache_new(watch ? fx->run : NULL, &fx->ctx.stats_cache), 0);
	assert_int_equal(api_stats_cache_watching(fx->ctx.stats_cache), watch);
	return fx;
}

static void fixture_free(struct fixture *fx)
{
	char cmd[700];
	api_stats_cache_free(fx->ctx.stats_cache);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->ctx.state_dir);
	assert_int_equal(system(cmd), 0);
	free(fx);
}

/* A statistics document as chsm-vsmd writes it. */
static void doc(char *out, size_t cap, int sessions, int64_t updated)
{
	snprintf(out, cap,
		 "{\"sessions\": %d, \"opsTotal\": %d, \"ops\": {\"sm2.sign\": {\"count\": %d, "
		 "\"rate\": %d.5}}, \"updatedAt\": %lld}\n",
		 sessions, 3 * sessions, 3 * sessions, sessions, (long long)updated);
}

/* Replaces the file by rename, as chsm-vsmd does. */
static void replace(struct fixture *fx, const char *text)
{
	char tmp[720];
	snprintf(tmp, sizeof(tmp), "%s.tmp", fx->path);
	FILE *f = fopen(tmp, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, fx->path), 0);
}

/* Rewrites the file in place (same inode). */
static void rewrite(struct fixture *fx, const char *text)
{
	int fd = open(fx->path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
}

/* The sessions the cache answers for v1 (sync), or -1 for none; checks
 * the other figures agree with doc(). */
static int sessions_now(struct fixture *fx)
{
	struct api_vsm_figures f = {0};
	if (!api_vsm_stats_read(&fx->ctx, "v1", true, &f))
		return -1;
	char want[160];
	snprintf(want, sizeof(want), "{\"sm2.sign\":{\"count\":%d,\"rate\":%d.5}}",
		 (int)f.sessions * 3, (int)f.sessions);
	assert_int_equal(f.ops_total, 3 * f.sessions);
	assert_string_equal(f.ops_text, want);
	free(f.ops_text);
	return (int)f.sessions;
}

static void follow_file(bool watch)
{
	struct fixture *fx = fixture_new(watch);
	char text[256];
	assert_int_equal(sessions_now(fx), -1); /* no file yet */
	for (int i = 0; i < 300; i++) {
		doc(text, sizeof(text), i, chsm_now_ms());
		/* In place only when watched: without the watch, stat cannot
		 * tell a rewrite of the same size within the same clock tick
		 * (chsm-vsmd always renames). */
		if (watch && i % 3 == 2)
			rewrite(fx, text);
		else
			replace(fx, text);
		/* the first read after each change, and a cached one */
		assert_int_equal(sessions_now(fx), i);
		assert_int_equal(sessions_now(fx), i);
	}
	/* watched, the same size within one clock tick in place: seen */
	for (int i = 0; watch && i < 50; i++) {
		doc(text, sizeof(text), 100 + i, chsm_now_ms());
		rewrite(fx, text);
		assert_int_equal(sessions_now(fx), 100 + i);
	}
	/* removed: none */
	assert_int_equal(unlink(fx->path), 0);
	assert_int_equal(sessions_now(fx), -1);
	/* stale (updatedAt 11 s ago) or from the future: none */
	doc(text, sizeof(text), 5, chsm_now_ms() - 11000);
	replace(fx, text);
	assert_int_equal(sessions_now(fx), -1);
	doc(text, sizeof(text), 5, chsm_now_ms() + 11000);
	replace(fx, text);
	assert_int_equal(sessions_now(fx), -1);
	/* fresh again, then malformed: none */
	doc(text, sizeof(text), 6, chsm_now_ms());
	replace(fx, text);
	assert_int_equal(sessions_now(fx), 6);
	replace(fx, "{\"sessions\": -1, \"opsTotal\": 0, \"ops\": {}, \"updatedAt\": 1}");
	assert_int_equal(sessions_now(fx), -1);
	replace(fx, "not json");
	assert_int_equal(sessions_now(fx), -1);
	doc(text, sizeof(text), 7, chsm_now_ms());
	replace(fx, text);
	assert_int_equal(sessions_now(fx), 7);
	assert_int_equal(api_stats_cache_watching(fx->ctx.stats_cache), watch);
	fixture_free(fx);
}

static void test_stats_follow_file_watched(void **state)
{
	(void)state;
	follow_file(true);
}

static void test_stats_follow_file_unwatched(void **state)
{
	(void)state;
	follow_file(false);
}

/* The directory moved away and back: the watch is gone (the cache says
 * so) and every figure is checked with stat from then on. */
static void test_stats_watch_lost(void **state)
{
	(void)state;
	struct fixture *fx = fixture_new(true);
	char text[256], away[700];
	doc(text, sizeof(text), 1, chsm_now_ms());
	replace(fx, text);
	assert_int_equal(sessions_now(fx), 1);
	snprintf(away, sizeof(away), "%s.away", fx->run);
	assert_int_equal(rename(fx->run, away), 0);
	assert_int_equal(rename(away, fx->run), 0);
	doc(text, sizeof(text), 2, chsm_now_ms());
	replace(fx, text);
	assert_int_equal(sessions_now(fx), 2);
	assert_false(api_stats_cache_watching(fx->ctx.stats_cache));
	doc(text, sizeof(text), 3, chsm_now_ms());
	replace(fx, text);
	assert_int_equal(sessions_now(fx), 3);
	assert_int_equal(sessions_now(fx), 3);
	fixture_free(fx);
}

/* A directory that cannot be watched: no watch, figures still follow. */
static void test_stats_unwatchable(void **state)
{
	(void)state;
	struct api_stats_cache *c = NULL;
	assert_int_equal(api_stats_cache_new("/nonexistent/run", &c), 0);
	assert_false(api_stats_cache_watching(c));
	api_stats_cache_free(c);
	api_stats_cache_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_text_vs_jansson),
		cmocka_unit_test(test_stats_follow_file_watched),
		cmocka_unit_test(test_stats_follow_file_unwatched),
		cmocka_unit_test(test_stats_watch_lost),
		cmocka_unit_test(test_stats_unwatchable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
