/*
 * format.h: a log event as a spool record, and as what a collector
 * receives: an RFC 5424 syslog message or a JSON array of objects.
 *
 * A record is compact JSON {"t":<ms>,"l":<level>,"e":<event>,"f":[key,
 * value, ...]}; strings are made valid UTF-8 first (a bad byte becomes
 * '?'). The formats are described in docs/operations.md ("Log shipping").
 * Pure functions; nothing here logs or does I/O.
 */
#ifndef CHSM_LOGSHIP_FORMAT_H
#define CHSM_LOGSHIP_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* Facility of every syslog message: local0 (RFC 5424 code 16). */
#define LOGSHIP_SYSLOG_FACILITY 16
/* SD-ID of the structured data: a private name under 32473, the
 * enterprise number RFC 5612 reserves for documentation and examples. */
#define LOGSHIP_SD_ID "chsm@32473"

struct logship_event {
	int64_t ts_ms;
	int level;            /* enum chsm_log_level: 0 error, 1 warning, 2 info */
	const char *event;
	const char **kv;      /* n keys and values, alternately */
	size_t n;
	void *doc;            /* the decoded record, owning the strings */
};

/* Encodes an event as a record; *ret is malloc'ed, *ret_len its length. */
int logship_record_encode(int level, int64_t ts_ms, const char *event, const char *const *kv,
			  size_t n, char **ret, size_t *ret_len);
/* Decodes a record; -EBADMSG when it is not one. Clear with
 * logship_event_clear. */
int logship_record_decode(const char *data, size_t len, struct logship_event *ret);
void logship_event_clear(struct logship_event *e);

/* The RFC 5424 message for e (no trailing newline or framing), at most max
 * octets: values are shortened (at a UTF-8 boundary, before escaping)
 * until it fits. *ret is malloc'ed and NUL-terminated. */
int logship_format_syslog(const struct logship_event *e, uint64_t seq, const char *hostname,
			  long pid, size_t max, char **ret, size_t *ret_len);
/* A JSON array with one object per event: seq, ts (RFC 3339, UTC, ms),
 * level, host, app, event, then the event's fields (a field named like one
 * of these gets a leading '_'). *ret is malloc'ed. */
int logship_format_json(const struct logship_event *ev, const uint64_t *seqs, size_t n,
			const char *hostname, char **ret, size_t *ret_len);

#endif
