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

enum chsm_log_level { CHSM_LOG_ERROR = 0, CHSM_LOG_WARNING = 1, CHSM_LOG_INFO = 2, CHSM_LOG_DEBUG = 3 };

/* Chooses the sink (syslog when use_syslog, else stderr) and the most
 * verbose level written. Default: stderr, info. */
void chsm_log_setup(const char *ident, int use_syslog, enum chsm_log_level max_level);

/* Writes one line: ts=<ms> level=<level> event=<event> then each key/value
 * pair given as alternating const char * arguments, terminated by NULL. */
void chsm_log(enum chsm_log_level level, const char *event, ...);

#endif
