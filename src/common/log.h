/*
 * log.h: the daemon's structured log, one line per event in logfmt
 * (key=value, values quoted when needed), to stderr or syslog.
 *
 * Only daemon layers (chsmd's API and main) log; libraries return errors.
 * Callers never pass secrets: the helpers below take only what a log line
 * may show, and chsm_log escapes control characters so a peer cannot forge
 * lines.
 */
#ifndef CHSM_COMMON_LOG_H
#define CHSM_COMMON_LOG_H

#include <stddef.h>
#include <stdint.h>

enum chsm_log_level { CHSM_LOG_ERROR = 0, CHSM_LOG_WARNING = 1, CHSM_LOG_INFO = 2, CHSM_LOG_DEBUG = 3 };

/* Chooses the sink (syslog when use_syslog, else stderr) and the most
 * verbose level written. Default: stderr, info. */
void chsm_log_setup(const char *ident, int use_syslog, enum chsm_log_level max_level);

/* Writes one line: ts=<ms> level=<level> event=<event> then each key/value
 * pair given as alternating const char * arguments, terminated by NULL. */
void chsm_log(enum chsm_log_level level, const char *event, ...);

/* Maximum key/value pairs of one event that a sink receives. */
#define CHSM_LOG_SINK_MAX_PAIRS 32

/* A second consumer of every event up to info (debug never reaches it),
 * whatever the level chosen by chsm_log_setup: kv holds n keys and values
 * alternately (2*n strings, values never NULL). Called in the logging
 * thread, after the line is written; it must not block for long. Events
 * logged from inside the sink do not reach it again. */
typedef void (*chsm_log_sink_fn)(void *ctx, enum chsm_log_level level, int64_t ts_ms,
				 const char *event, const char *const *kv, size_t n);
/* Installs (fn non-NULL) or removes (fn NULL) the sink. Returns once no
 * thread is inside the previous sink. */
void chsm_log_set_sink(chsm_log_sink_fn fn, void *ctx);

#endif
