/*
 * logship.h: ships chsmd's log events to the collector configured by
 * PROFILE.md 7.2.7: RFC 5424 syslog over UDP or TCP, or HTTP(S) POSTs of
 * JSON arrays.
 *
 * Events reach it through logship_sink (installed with chsm_log_set_sink).
 * Those at or above the configured level are appended to an on-disk spool
 * (spool.h) at once; one thread reads the spool in order and delivers,
 * removing records only once the collector took them (UDP: sent; TCP:
 * written; HTTP: a 2xx answer), retrying with a backoff of 1 s doubling to
 * 30 s while it is down. With no address configured nothing is spooled.
 * The address is read through the caller's callback at start, whenever an
 * event named "config.log_upload" passes (7.2.7 logs it after storing) and
 * every LOGSHIP_RELOAD_MS. Header values and URL credentials are never
 * logged. docs/operations.md ("Log shipping") has the design.
 */
#ifndef CHSM_LOGSHIP_H
#define CHSM_LOGSHIP_H

#include <stddef.h>
#include <stdint.h>

#include "common/log.h"

/* Default bound of the spool: days of management events at a busy CHSM. */
#define LOGSHIP_DEFAULT_SPOOL_BYTES (64ull * 1024 * 1024)
/* The smallest bound accepted (spool.h's SPOOL_MIN_BYTES). */
#define LOGSHIP_MIN_SPOOL_BYTES (16 * 1024)
/* How often the configured address is read again. */
#define LOGSHIP_RELOAD_MS 5000
/* How often appended records are synced, at most. */
#define LOGSHIP_SYNC_MS 200
/* Retry delays while the collector is down. */
#define LOGSHIP_BACKOFF_MIN_MS 1000
#define LOGSHIP_BACKOFF_MAX_MS 30000
/* One HTTP POST: at most this many records and about this many bytes. */
#define LOGSHIP_HTTP_BATCH_RECORDS 100
#define LOGSHIP_HTTP_BATCH_BYTES (256 * 1024)
/* Records sent per syslog round (one TCP write each, or one datagram). */
#define LOGSHIP_SYSLOG_BATCH_RECORDS 100
/* Largest datagram: RFC 5424 §6.1 says receivers should take 2048 octets. */
#define LOGSHIP_UDP_MAX 2048
/* Largest TCP message: rsyslog's default maxMessageSize is 8 KiB. */
#define LOGSHIP_TCP_MAX 8192
/* Network timeouts: connect, and a stalled transfer. */
#define LOGSHIP_CONNECT_TIMEOUT_MS 5000
#define LOGSHIP_IO_TIMEOUT_MS 10000

typedef struct logship logship;

/* Reads the 7.2.7 document ({url, level, headers?}, JSON). Returns 0 and a
 * malloc'ed, NUL-terminated *ret_json (a secret: logship wipes and frees
 * it), -ENOENT when none is configured, or another -errno. */
typedef int (*logship_config_fn)(void *ctx, char **ret_json, size_t *ret_len);

struct logship_options {
	const char *spool_dir;    /* created 0700 */
	uint64_t spool_bytes;     /* the spool's bound */
	logship_config_fn config;
	void *config_ctx;
};

/* Opens the spool, reads the address and starts the shipping thread. */
int logship_start(const struct logship_options *o, logship **ret);
/* Stops the thread (an HTTP transfer in flight is abandoned and its batch
 * stays spooled), syncs and closes the spool. Remove the sink first.
 * Accepts NULL. */
void logship_stop(logship *ls);
/* The chsm_log sink; ctx is the logship. */
void logship_sink(void *ctx, enum chsm_log_level level, int64_t ts_ms, const char *event,
		  const char *const *kv, size_t n);
/* Records dropped because the spool was full or unwritable, by every
 * logship of this process (0 when none ran): chsm_log_dropped_total. */
uint64_t logship_dropped_total(void);

#endif
