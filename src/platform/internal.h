/*
 * internal.h: what the platform's backends share. Private to src/platform.
 */
#ifndef CHSM_PLATFORM_INTERNAL_H
#define CHSM_PLATFORM_INTERNAL_H

#include <limits.h>
#include <pthread.h>

#include "platform/platform.h"

/* The longest argument vector plat_run takes, with its NULL. */
#define PLAT_ARGV_MAX 20
/* Characters of an argument (an address, a name, a path). */
#define PLAT_ARG_MAX  PATH_MAX

struct chsm_platform {
	enum platform_kind kind;
	pthread_mutex_t lock;
	char tag[7];                 /* 6 hex digits from the instance */
	char bridge[PLATFORM_IFNAME_MAX + 1];
	char resolv_conf[PATH_MAX];
	char chrony_sources[PATH_MAX];
	char chronyc_socket[PATH_MAX];   /* "" when not given */
	char ip_path[64];
	char chronyc_path[64];           /* "" when chronyc is not installed */
};

/* Runs argv[0] (an absolute path) with argv, an empty environment but
 * LC_ALL=C, stdin from /dev/null and stdout+stderr collected, and waits
 * for it. Returns 0 when it exits 0; else -EEXIST, -ENODEV, -EPERM or
 * -EIO from its message, with err = "<argv[1..] joined>: <its first
 * line of output>". */
int plat_run(const char *const *argv, char *err, size_t errlen);

/* A printf-style message into err (may be NULL). */
void plat_set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* FNV-1a (32 bits) of s: names, never security. */
uint32_t plat_hash(const char *s);

/* The linux backend (linux.c). */
int linux_init(chsm_platform *p);
int linux_start(chsm_platform *p, char *err, size_t errlen);
int linux_apply_network(chsm_platform *p, const struct platform_network *next,
			const struct platform_network *prev, char *err, size_t errlen);
int linux_apply_time(chsm_platform *p, const char *const *servers, size_t n, bool enabled,
		     const char **ret_applied, char *err, size_t errlen);
int linux_vsm_prepare(chsm_platform *p, const struct platform_vsm_net *n, char *netns_path,
		      size_t cap, char *err, size_t errlen);
void linux_vsm_release(chsm_platform *p, const char *vsm_id);
int linux_move_begin(chsm_platform *p, const struct platform_vsm_net *old,
		     const struct platform_vsm_net *next, char *err, size_t errlen);
void linux_move_end(chsm_platform *p, const struct platform_vsm_net *old,
		    const struct platform_vsm_net *next, bool moved);

/* The chrony sources text for servers (pure; linux.c). Returns the length
 * written into buf (NUL-terminated), or -ENOSPC. */
int plat_chrony_sources_text(const char *const *servers, size_t n, bool enabled, char *buf,
			     size_t cap);
/* The resolv.conf text for dns (pure; linux.c). */
int plat_resolv_conf_text(const struct net_addr *dns, size_t n, char *buf, size_t cap);

#endif
