/*
 * stats.h: operation counters of one VSM process and the statistics file
 * chsmd reads (docs/vsm.md, "Statistics").
 *
 * Counting is a relaxed atomic increment, safe from any thread. When a path
 * is configured, a thread rewrites the file (temp file + rename, so readers
 * see a whole document or the previous one) about once a second while
 * anything changed or the rates it shows are not yet back to 0, at least
 * every 5 s otherwise (updatedAt stays fresh), and once more when stopped.
 * Never logs.
 */
#ifndef CHSM_VSM_STATS_H
#define CHSM_VSM_STATS_H

#include <stdint.h>

enum vsm_stat_op {
	VSM_STAT_SM2_SIGN,
	VSM_STAT_SM2_VERIFY,
	VSM_STAT_SM2_ENCRYPT,
	VSM_STAT_SM2_DECRYPT,
	VSM_STAT_SM4_ENCRYPT,
	VSM_STAT_SM4_DECRYPT,
	VSM_STAT_SM4_MAC,
	VSM_STAT_RANDOM,
	VSM_STAT_KEYGEN,
	VSM_STAT_COUNT
};

typedef struct vsm_stats vsm_stats;

/* Counters, with a writer thread when path is not NULL (copied). -ENOMEM,
 * or a pthread error. */
int vsm_stats_new(const char *path, vsm_stats **ret_stats);
/* Stops the writer (after a last write) and frees. Accepts NULL. */
void vsm_stats_free(vsm_stats *st);

void vsm_stats_count(vsm_stats *st, enum vsm_stat_op op);
/* Sessions currently authenticated: +1 / -1. */
void vsm_stats_sessions(vsm_stats *st, int delta);
uint64_t vsm_stats_get(vsm_stats *st, enum vsm_stat_op op);

/* The JSON document for the counters now and the rates over interval_ms
 * since prev (counts at the previous write; may be NULL: rates 0), into a
 * malloc'ed NUL-terminated *ret_json; the counts it shows into ret_counts
 * (VSM_STAT_COUNT values) unless NULL. */
int vsm_stats_json(vsm_stats *st, const uint64_t *prev, int64_t interval_ms,
		   uint64_t *ret_counts, char **ret_json);

#endif
