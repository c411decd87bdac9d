/*
 * ntp.h: the CHSM's view of time (PROFILE.md 7.2.5): an SNTP client
 * (RFC 4330) and a monitor thread that measures the clock's offset to the
 * configured servers and keeps the latest result for 7.2.2.
 *
 * Queries are bounded (a timeout per server); the monitor asks servers in
 * the configured order and keeps the first good answer. It never changes
 * the clock: it measures and reports. This module never logs; the owner
 * gets each result through a callback.
 */
#ifndef CHSM_NTP_H
#define CHSM_NTP_H

#include <stdbool.h>
#include <stdint.h>

#include "common/limits.h"

struct sntp_sample {
	int64_t offset_ms;   /* server clock minus ours */
	int64_t delay_ms;    /* round trip */
	int stratum;
};

/* Queries one server ("host", "host:port", "v4", "[v6]:port"; default port
 * 123) once. Returns 0, -ETIMEDOUT, -EHOSTUNREACH (name not resolved),
 * -EPROTO (a malformed, unsynchronised or mismatched answer) or -errno. */
int sntp_query(const char *server, int timeout_ms, struct sntp_sample *ret);

struct ntp_status {
	bool enabled;
	bool synced;          /* the last round got an answer */
	int64_t offset_ms;
	char server[256];     /* the server that answered, "" when none */
	int64_t measured_at;  /* Unix ms of the last round, 0 when none */
};

typedef struct ntp_monitor ntp_monitor;
typedef void (*ntp_result_fn)(void *ctx, const struct ntp_status *st);

/* Starts the monitor thread; it measures every interval_ms (and at once
 * after ntp_monitor_configure). on_result may be NULL. */
int ntp_monitor_start(int interval_ms, ntp_result_fn on_result, void *ctx, ntp_monitor **ret);
/* Sets the UDP port asked on every configured server (default 123). For
 * tests and deployments whose NTP servers listen elsewhere: 7.2.5 takes
 * host names and addresses only. Applies from the next round. */
int ntp_monitor_set_port(ntp_monitor *m, int port);
/* Replaces the server list (n <= CHSM_MAX_NTP_SERVERS) and wakes the
 * thread. enabled false stops measuring and reports not synced. */
int ntp_monitor_configure(ntp_monitor *m, const char *const *servers, int n, bool enabled);
/* The latest status. */
void ntp_monitor_status(ntp_monitor *m, struct ntp_status *ret);
/* Stops and joins the thread. Accepts NULL. */
void ntp_monitor_stop(ntp_monitor *m);

#endif
