/*
 * log.c: see log.h. Lines are built in a bounded buffer and written with a
 * single write so that concurrent threads never interleave within a line.
 */
#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "common/util.h"

static int log_use_syslog;
static enum chsm_log_level log_max = CHSM_LOG_INFO;
static pthread_rwlock_t sink_lock = PTHREAD_RWLOCK_INITIALIZER;
static chsm_log_sink_fn sink_fn;
static void *sink_ctx;
static _Thread_local bool in_sink;

void chsm_log_set_sink(chsm_log_sink_fn fn, void *ctx)
{
	pthread_rwlock_wrlock(&sink_lock);
	sink_fn = fn;
	sink_ctx = ctx;
	pthread_rwlock_unlock(&sink_lock);
}

static void to_sink(enum chsm_log_level level, int64_t ts, const char *event, const char *const *kv,
		    size_t n)
{
	if (in_sink || level > CHSM_LOG_INFO)
		return;
	pthread_rwlock_rdlock(&sink_lock);
	if (sink_fn) {
		in_sink = true;
		sink_fn(sink_ctx, level, ts, event, kv, n);
		in_sink = false;
	}
	pthread_rwlock_unlock(&sink_lock);
}

static const char *level_name(enum chsm_log_level l)
{
	switch (l) {
	case CHSM_LOG_ERROR: return "error";
	case CHSM_LOG_WARNING: return "warning";
	case CHSM_LOG_INFO: return "info";
	case CHSM_LOG_DEBUG: return "debug";
	}
	return "info";
}

void chsm_log_setup(const char *ident, int use_syslog, enum chsm_log_level max_level)
{
	log_use_syslog = use_syslog;
	log_max = max_level;
	if (use_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

/* Appends s to buf at *pos, quoted when it holds spaces, quotes or '=',
 * with control characters escaped as \xHH. */
static void append_value(char *buf, size_t cap, size_t *pos, const char *s)
{
	bool quote = *s == '\0' || strpbrk(s, " \"=\\") != NULL;
	for (const char *p = s; *p && !quote; p++)
		quote = (unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f;
	if (quote && *pos + 1 < cap)
		buf[(*pos)++] = '"';
	for (const char *p = s; *p && *pos + 5 < cap; p++) {
		unsigned char c = (unsigned char)*p;
		if (c < 0x20 || c == 0x7f) {
			*pos += (size_t)snprintf(buf + *pos, cap - *pos, "\\x%02x", c);
		} else {
			if (c == '"' || c == '\\')
				buf[(*pos)++] = '\\';
			buf[(*pos)++] = (char)c;
		}
	}
	if (quote && *pos + 1 < cap)
		buf[(*pos)++] = '"';
}

void chsm_log(enum chsm_log_level level, const char *event, ...)
{
	bool write_line = level <= log_max;
	if (!write_line && level > CHSM_LOG_INFO)
		return;
	int64_t ts = chsm_now_ms();
	const char *kv[2 * CHSM_LOG_SINK_MAX_PAIRS];
	size_t npairs = 0;
	char line[2048];
	size_t pos = 0;
	if (!log_use_syslog)
		pos += (size_t)snprintf(line, sizeof(line), "ts=%lld ", (long long)ts);
	pos += (size_t)snprintf(line + pos, sizeof(line) - pos, "level=%s event=", level_name(level));
	append_value(line, sizeof(line), &pos, event);
	bool full = false;
	va_list ap;
	va_start(ap, event);
	for (;;) {
		const char *key = va_arg(ap, const char *);
		if (!key)
			break;
		const char *value = va_arg(ap, const char *);
		if (npairs < CHSM_LOG_SINK_MAX_PAIRS) {
			kv[2 * npairs] = key;
			kv[2 * npairs + 1] = value ? value : "";
			npairs++;
		}
		if (full || pos + strlen(key) + 3 >= sizeof(line) - 8) {
			full = true;
			continue;
		}
		pos += (size_t)snprintf(line + pos, sizeof(line) - pos, " %s=", key);
		append_value(line, sizeof(line), &pos, value ? value : "");
	}
	va_end(ap);
	if (write_line) {
		if (log_use_syslog) {
			static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
			line[pos] = '\0';
			syslog(prio[level], "%s", line);
		} else {
			line[pos++] = '\n';
			ssize_t w = write(STDERR_FILENO, line, pos);
			(void)w;
		}
	}
	to_sink(level, ts, event, kv, npairs);
}
