/*
 * stats.c: see stats.h. The writer thread sleeps on a monotonic condition
 * variable so that vsm_stats_free wakes it at once.
 */
#include "vsm/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#define WRITE_INTERVAL_MS 1000
/* An unchanged document is rewritten this often, so updatedAt stays fresh. */
#define HEARTBEAT_MS      5000

static const char *const op_names[VSM_STAT_COUNT] = {
	[VSM_STAT_SM2_SIGN] = "sm2.sign",       [VSM_STAT_SM2_VERIFY] = "sm2.verify",
	[VSM_STAT_SM2_ENCRYPT] = "sm2.encrypt", [VSM_STAT_SM2_DECRYPT] = "sm2.decrypt",
	[VSM_STAT_SM4_ENCRYPT] = "sm4.encrypt", [VSM_STAT_SM4_DECRYPT] = "sm4.decrypt",
	[VSM_STAT_SM4_MAC] = "sm4.mac",         [VSM_STAT_RANDOM] = "random",
	[VSM_STAT_KEYGEN] = "keygen",
};

struct vsm_stats {
	atomic_uint_fast64_t ops[VSM_STAT_COUNT];
	atomic_int sessions;
	atomic_uint_fast64_t changes;
	char *path;
	pthread_t thread;
	bool has_thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
};

void vsm_stats_count(vsm_stats *st, enum vsm_stat_op op)
{
	atomic_fetch_add_explicit(&st->ops[op], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->changes, 1, memory_order_relaxed);
}

void vsm_stats_sessions(vsm_stats *st, int delta)
{
	atomic_fetch_add_explicit(&st->sessions, delta, memory_order_relaxed);
	atomic_fetch_add_explicit(&st->changes, 1, memory_order_relaxed);
}

uint64_t vsm_stats_get(vsm_stats *st, enum vsm_stat_op op)
{
	return atomic_load_explicit(&st->ops[op], memory_order_relaxed);
}

int vsm_stats_json(vsm_stats *st, const uint64_t *prev, int64_t interval_ms,
		   uint64_t *ret_counts, char **ret_json)
{
	uint64_t now[VSM_STAT_COUNT], total = 0;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return -ENOMEM;
	for (int i = 0; i < VSM_STAT_COUNT; i++)
		total += now[i] = vsm_stats_get(st, i);
	fprintf(f, "{\"sessions\": %d, \"opsTotal\": %llu, \"ops\": {",
		atomic_load_explicit(&st->sessions, memory_order_relaxed),
		(unsigned long long)total);
	for (int i = 0; i < VSM_STAT_COUNT; i++) {
		double rate = prev && interval_ms > 0 ?
			      (double)(now[i] - prev[i]) * 1000.0 / (double)interval_ms : 0.0;
		fprintf(f, "%s\"%s\": {\"count\": %llu, \"rate\": %.1f}", i ? ", " : "",
			op_names[i], (unsigned long long)now[i], rate);
	}
	fprintf(f, "}, \"updatedAt\": %lld}\n", (long long)chsm_now_ms());
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	if (ret_counts)
		memcpy(ret_counts, now, sizeof(now));
	*ret_json = buf;
	return 0;
}

/* Writes data to path through a temporary file and rename (no fsync: the
 * file is a live view, not state). */
static int write_replace(const char *path, const char *data, size_t len)
{
	char tmp[4096];
	int r;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto fail;
		}
		done += (size_t)n;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		r = -errno;
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return r;
}

static void *writer_main(void *arg)
{
	vsm_stats *st = arg;
	uint64_t prev[VSM_STAT_COUNT] = { 0 }, cur[VSM_STAT_COUNT], written_changes = UINT64_MAX;
	int64_t prev_at = chsm_monotonic_ms(), written_at = 0;
	bool stop = false, moving = false;
	while (!stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += WRITE_INTERVAL_MS / 1000;
		pthread_mutex_lock(&st->lock);
		while (!st->stop && pthread_cond_timedwait(&st->cond, &st->lock, &ts) != ETIMEDOUT)
			;
		stop = st->stop;
		pthread_mutex_unlock(&st->lock);
		uint64_t changes = atomic_load_explicit(&st->changes, memory_order_relaxed);
		int64_t now = chsm_monotonic_ms();
		/* Unchanged: skip, unless the last document still shows rates
		 * (they must fall to 0) or is getting old (readers check
		 * updatedAt). */
		if (changes == written_changes && !moving && now - written_at < HEARTBEAT_MS)
			continue;
		char *json = NULL;
		if (vsm_stats_json(st, prev, now - prev_at, cur, &json) == 0) {
			/* A failed write is tried again a second later. */
			if (write_replace(st->path, json, strlen(json)) == 0) {
				written_changes = changes;
				written_at = now;
			}
			free(json);
			moving = memcmp(cur, prev, sizeof(cur)) != 0;
			memcpy(prev, cur, sizeof(prev));
			prev_at = now;
		}
	}
	return NULL;
}

int vsm_stats_new(const char *path, vsm_stats **ret_stats)
{
	pthread_condattr_t attr;
	int r = -ENOMEM;
	vsm_stats *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&st->cond, &attr);
	pthread_condattr_destroy(&attr);
	if (path) {
		st->path = strdup(path);
		if (!st->path)
			goto fail;
		r = -pthread_create(&st->thread, NULL, writer_main, st);
		if (r < 0)
			goto fail;
		st->has_thread = true;
	}
	*ret_stats = st;
	return 0;
fail:
	vsm_stats_free(st);
	return r;
}

void vsm_stats_free(vsm_stats *st)
{
	if (!st)
		return;
	if (st->has_thread) {
		pthread_mutex_lock(&st->lock);
		st->stop = true;
		pthread_cond_signal(&st->cond);
		pthread_mutex_unlock(&st->lock);
		pthread_join(st->thread, NULL);
	}
	pthread_cond_destroy(&st->cond);
	pthread_mutex_destroy(&st->lock);
	free(st->path);
	free(st);
}
