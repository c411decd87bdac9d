/*
 * platform.c: see platform.h. The dispatch between the backends and the
 * sandbox backend; the linux backend is in linux.c.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "platform/internal.h"

bool platform_ifname_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	return n >= 1 && n <= PLATFORM_IFNAME_MAX && chsm_str_charset(name, 1, NULL) &&
	       chsm_str_charset(name, n, "_.-");
}

static int copy_path(char *dst, size_t cap, const char *given, const char *def)
{
	const char *v = given ? given : def;
	if (v[0] != '/' || strlen(v) >= cap)
		return -EINVAL;
	snprintf(dst, cap, "%s", v);
	return 0;
}

int platform_new(const struct platform_options *o, chsm_platform **ret)
{
	if (!o || (o->kind != PLATFORM_SANDBOX && o->kind != PLATFORM_LINUX))
		return -EINVAL;
	chsm_platform *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->kind = o->kind;
	pthread_mutex_init(&p->lock, NULL);
	snprintf(p->tag, sizeof(p->tag), "%06x",
		 (unsigned)(plat_hash(o->instance ? o->instance : "") & 0xffffff));
	int r = 0;
	const char *bridge = o->vsm_bridge ? o->vsm_bridge : PLATFORM_DEFAULT_BRIDGE;
	if (!platform_ifname_valid(bridge) ||
	    copy_path(p->resolv_conf, sizeof(p->resolv_conf), o->resolv_conf,
		      PLATFORM_DEFAULT_RESOLV_CONF) < 0 ||
	    copy_path(p->chrony_sources, sizeof(p->chrony_sources), o->chrony_sources,
		      PLATFORM_DEFAULT_CHRONY_SOURCES) < 0 ||
	    (o->chronyc_socket && copy_path(p->chronyc_socket, sizeof(p->chronyc_socket),
					    o->chronyc_socket, NULL) < 0))
		r = -EINVAL;
	snprintf(p->bridge, sizeof(p->bridge), "%s", bridge);
	if (r == 0 && p->kind == PLATFORM_LINUX)
		r = linux_init(p);
	if (r < 0) {
		platform_free(p);
		return r;
	}
	*ret = p;
	return 0;
}

void platform_free(chsm_platform *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	free(p);
}

enum platform_kind platform_kind_of(const chsm_platform *p)
{
	return p->kind;
}

const char *platform_name(const chsm_platform *p)
{
	return p->kind == PLATFORM_LINUX ? "linux" : "sandbox";
}

int platform_start(chsm_platform *p, char *err, size_t errlen)
{
	if (p->kind != PLATFORM_LINUX)
		return 0;
	pthread_mutex_lock(&p->lock);
	int r = linux_start(p, err, errlen);
	pthread_mutex_unlock(&p->lock);
	return r;
}

void platform_stop(chsm_platform *p)
{
	char ignored[256];
	if (!p || p->kind != PLATFORM_LINUX)
		return;
	pthread_mutex_lock(&p->lock);
	(void)linux_start(p, ignored, sizeof(ignored));
	pthread_mutex_unlock(&p->lock);
}

int platform_apply_network(chsm_platform *p, const struct platform_network *next,
			   const struct platform_network *prev, const char **ret_applied,
			   char *err, size_t errlen)
{
	if (p->kind != PLATFORM_LINUX) {
		*ret_applied = "stored";
		return 0;
	}
	pthread_mutex_lock(&p->lock);
	int r = linux_apply_network(p, next, prev, err, errlen);
	pthread_mutex_unlock(&p->lock);
	if (r == 0)
		*ret_applied = "now";
	return r;
}

int platform_apply_time(chsm_platform *p, const char *const *servers, size_t n, bool enabled,
			const char **ret_applied, char *err, size_t errlen)
{
	if (p->kind != PLATFORM_LINUX) {
		*ret_applied = "stored";
		return 0;
	}
	pthread_mutex_lock(&p->lock);
	int r = linux_apply_time(p, servers, n, enabled, ret_applied, err, errlen);
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* Sandbox: whether this host can bind a socket to a. */
static int check_local(const struct net_addr *a, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof(ss));
	if (a->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, a->bytes, 4);
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, a->bytes, 16);
		len = sizeof(*sin6);
	}
	int fd = socket(a->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int r = bind(fd, (struct sockaddr *)&ss, len) < 0 ? -errno : 0;
	close(fd);
	if (r < 0) {
		char text[NET_ADDR_TEXT_MAX];
		net_addr_text(a, text);
		plat_set_err(err, errlen, "%s is not an address of this host (the sandbox platform "
			"serves VSMs only on local addresses)", text);
		return r == -EADDRNOTAVAIL ? -EADDRNOTAVAIL : r;
	}
	return 0;
}

int platform_vsm_prepare(chsm_platform *p, const struct platform_vsm_net *n, char *netns_path,
			 size_t cap, char *err, size_t errlen)
{
	if (p->kind != PLATFORM_LINUX) {
		if (cap)
			netns_path[0] = '\0';
		return check_local(&n->addr, err, errlen);
	}
	pthread_mutex_lock(&p->lock);
	int r = linux_vsm_prepare(p, n, netns_path, cap, err, errlen);
	pthread_mutex_unlock(&p->lock);
	return r;
}

void platform_vsm_release(chsm_platform *p, const char *vsm_id)
{
	if (p->kind != PLATFORM_LINUX)
		return;
	pthread_mutex_lock(&p->lock);
	linux_vsm_release(p, vsm_id);
	pthread_mutex_unlock(&p->lock);
}

int platform_vsm_move_begin(chsm_platform *p, const struct platform_vsm_net *old,
			    const struct platform_vsm_net *next, char *err, size_t errlen)
{
	if (p->kind != PLATFORM_LINUX)
		return check_local(&next->addr, err, errlen);
	pthread_mutex_lock(&p->lock);
	int r = linux_move_begin(p, old, next, err, errlen);
	pthread_mutex_unlock(&p->lock);
	return r;
}

void platform_vsm_move_end(chsm_platform *p, const struct platform_vsm_net *old,
			   const struct platform_vsm_net *next, bool moved)
{
	if (p->kind != PLATFORM_LINUX)
		return;
	pthread_mutex_lock(&p->lock);
	linux_move_end(p, old, next, moved);
	pthread_mutex_unlock(&p->lock);
}
