/*
 * linux.c: the linux backend of platform.h (root): the host network
 * through `ip` (iproute2), the host name through sethostname(2),
 * resolv.conf and the chrony sources file by atomic replacement, chronyd
 * through `chronyc reload sources`, and one network namespace with a
 * veth pair per running VSM.
 *
 * Why `ip` and not rtnetlink of our own: the commands are the ones an
 * operator reads and types (every step in an error message can be run by
 * hand), namespaces are made exactly as `ip netns` makes them (so `ip
 * netns list` and `ip -n` see them), and the cost, a process per step,
 * only falls on configuration changes and VSM starts. No shell is ever
 * involved (plat_run).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "platform/internal.h"

/* Where `ip netns` keeps its namespaces. */
#define NETNS_RUN_DIR "/run/netns"
/* The VSM end of a veth pair, inside the VSM's namespace. */
#define VSM_IFNAME "eth0"
/* Steps platform_apply_network may have to undo. */
#define MAX_UNDO (4 * CHSM_MAX_NETWORK_INTERFACES + 8)
/* Longest /proc/net route table read. */
#define ROUTE_TABLE_MAX (256 * 1024)

/* An `ip` command line: owned copies of its words. */
struct ipcmd {
	int argc;
	char argv[PLAT_ARGV_MAX - 1][NET_ADDR_TEXT_MAX + 24];
};

/* Builds c from the words (NULL-terminated); words are short by
 * construction (addresses, names, keywords). */
static void ipcmd_make(struct ipcmd *c, ...)
{
	va_list ap;
	const char *w;
	c->argc = 0;
	va_start(ap, c);
	while ((w = va_arg(ap, const char *)) && c->argc < PLAT_ARGV_MAX - 2)
		snprintf(c->argv[c->argc++], sizeof(c->argv[0]), "%s", w);
	va_end(ap);
}

static int ipcmd_run(chsm_platform *p, const struct ipcmd *c, char *err, size_t errlen)
{
	const char *argv[PLAT_ARGV_MAX];
	argv[0] = p->ip_path;
	for (int i = 0; i < c->argc; i++)
		argv[i + 1] = c->argv[i];
	argv[c->argc + 1] = NULL;
	return plat_run(argv, err, errlen);
}

/* "a/p" of an address and prefix. */
static void cidr_text(const struct net_addr *a, int prefix, char *buf, size_t cap)
{
	char t[NET_ADDR_TEXT_MAX];
	net_addr_text(a, t);
	snprintf(buf, cap, "%s/%d", t, prefix);
}

static const char *family_flag(int family)
{
	return family == AF_INET ? "-4" : "-6";
}

static int find_tool(char *out, size_t cap, const char *const *candidates)
{
	for (; *candidates; candidates++) {
		if (access(*candidates, X_OK) == 0) {
			snprintf(out, cap, "%s", *candidates);
			return 0;
		}
	}
	return -ENOENT;
}

int linux_init(chsm_platform *p)
{
	static const char *const ip[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip", NULL};
	static const char *const chronyc[] = {"/usr/bin/chronyc", "/usr/sbin/chronyc",
					      "/bin/chronyc", NULL};
	if (geteuid() != 0)
		return -EPERM;
	if (find_tool(p->ip_path, sizeof(p->ip_path), ip) < 0)
		return -ENOENT;
	if (find_tool(p->chronyc_path, sizeof(p->chronyc_path), chronyc) < 0)
		p->chronyc_path[0] = '\0';
	return 0;
}

/* The namespace of VSM id: "chsm-<tag>-<id>". */
static void vsm_netns_name(const chsm_platform *p, const char *id, char *buf, size_t cap)
{
	snprintf(buf, cap, "chsm-%s-%s", p->tag, id);
}

/* The host end of its veth pair: "c<tag><hash>", 15 characters. */
static void vsm_host_ifname(const chsm_platform *p, const char *id, char buf[16])
{
	snprintf(buf, 16, "c%s%08x", p->tag, (unsigned)plat_hash(id));
}

int linux_start(chsm_platform *p, char *err, size_t errlen)
{
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "chsm-%s-", p->tag);
	DIR *d = opendir(NETNS_RUN_DIR);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *e;
	int r = 0;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || strlen(e->d_name) > 128)
			continue;
		struct ipcmd c;
		ipcmd_make(&c, "netns", "delete", e->d_name, NULL);
		int rr = ipcmd_run(p, &c, err, errlen);
		if (rr < 0 && r == 0)
			r = rr;
	}
	closedir(d);
	return r;
}

/* ---- the host network ---- */

/* Whether interface name carries a/prefix now. */
static bool has_address(const char *name, const struct net_addr *a, int prefix)
{
	struct ifaddrs *list, *it;
	bool found = false;
	if (getifaddrs(&list) < 0)
		return false;
	for (it = list; it && !found; it = it->ifa_next) {
		if (!it->ifa_addr || strcmp(it->ifa_name, name) != 0 ||
		    it->ifa_addr->sa_family != a->family)
			continue;
		struct net_addr have, mask;
		memset(&have, 0, sizeof(have));
		memset(&mask, 0, sizeof(mask));
		have.family = mask.family = a->family;
		if (a->family == AF_INET) {
			memcpy(have.bytes, &((struct sockaddr_in *)it->ifa_addr)->sin_addr, 4);
			if (it->ifa_netmask)
				memcpy(mask.bytes, &((struct sockaddr_in *)it->ifa_netmask)->sin_addr, 4);
		} else {
			memcpy(have.bytes, &((struct sockaddr_in6 *)it->ifa_addr)->sin6_addr, 16);
			if (it->ifa_netmask)
				memcpy(mask.bytes, &((struct sockaddr_in6 *)it->ifa_netmask)->sin6_addr, 16);
		}
		int bits = 0;
		for (int i = 0; i < net_addr_bits(a); i++)
			bits += (mask.bytes[i / 8] >> (7 - i % 8)) & 1;
		found = net_addr_equal(&have, a) && bits == prefix;
	}
	freeifaddrs(list);
	return found;
}

/* Reads a /proc file (whose size stat does not tell) to its end, at most
 * ROUTE_TABLE_MAX bytes. Returns 0 with *ret_text (malloc'ed, NUL-ended),
 * -EFBIG or -errno. */
static int read_proc_text(const char *path, char **ret_text)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char *buf = malloc(ROUTE_TABLE_MAX + 1);
	size_t len = 0;
	int r = buf ? 0 : -ENOMEM;
	while (r == 0) {
		if (len == ROUTE_TABLE_MAX) {
			r = -EFBIG;
			break;
		}
		ssize_t n = read(fd, buf + len, ROUTE_TABLE_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = -errno;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[len] = '\0';
	*ret_text = buf;
	return 0;
}

static int read_default_route(int family, struct net_default_route *ret)
{
	char *text = NULL;
	const char *path = family == AF_INET ? "/proc/self/net/route" : "/proc/self/net/ipv6_route";
	int r = read_proc_text(path, &text);
	if (r == -ENOENT) {
		memset(ret, 0, sizeof(*ret));
		return 0;
	}
	if (r < 0)
		return r;
	r = net_parse_default_route(family, text, ret);
	free(text);
	return r;
}

struct undo {
	struct ipcmd cmds[MAX_UNDO];
	int n;
};

static void undo_push(struct undo *u, const struct ipcmd *c)
{
	if (u->n < MAX_UNDO)
		u->cmds[u->n++] = *c;
}

static void undo_all(chsm_platform *p, struct undo *u)
{
	char ignored[256];
	while (u->n > 0)
		(void)ipcmd_run(p, &u->cmds[--u->n], ignored, sizeof(ignored));
}

static const struct platform_iface *find_iface(const struct platform_network *n, const char *name)
{
	for (size_t i = 0; n && i < n->n_ifaces; i++)
		if (strcmp(n->ifaces[i].name, name) == 0)
			return &n->ifaces[i];
	return NULL;
}

/* The interface of n with a gateway of family, if any. */
static const struct platform_iface *gateway_iface(const struct platform_network *n, int family)
{
	for (size_t i = 0; n && i < n->n_ifaces; i++)
		if (n->ifaces[i].has_gateway && n->ifaces[i].gateway.family == family)
			return &n->ifaces[i];
	return NULL;
}

/* A command that makes route r (a snapshot) the default route again. */
static void restore_route_cmd(int family, const struct net_default_route *r, struct ipcmd *c)
{
	char gw[NET_ADDR_TEXT_MAX];
	if (r->gateway.family) {
		net_addr_text(&r->gateway, gw);
		ipcmd_make(c, family_flag(family), "route", "replace", "default", "via", gw, "dev",
			   r->dev, NULL);
	} else {
		ipcmd_make(c, family_flag(family), "route", "replace", "default", "dev", r->dev, NULL);
	}
}

/* The default route of family: made next's, or the one prev set removed.
 * before is the route as it was before apply_network changed anything,
 * which an undo restores. */
static int apply_routes(chsm_platform *p, int family, const struct platform_network *next,
			const struct platform_network *prev, const struct net_default_route *before,
			struct undo *u, char *err, size_t errlen)
{
	struct net_default_route now;
	struct ipcmd c, back;
	char gw[NET_ADDR_TEXT_MAX];
	int r = read_default_route(family, &now);
	if (r < 0) {
		plat_set_err(err, errlen, "cannot read the routing table: %s", strerror(-r));
		return r;
	}
	const struct platform_iface *want = gateway_iface(next, family);
	const struct platform_iface *had = gateway_iface(prev, family);
	if (want) {
		net_addr_text(&want->gateway, gw);
		if (now.present && now.metric == 0 && net_addr_equal(&now.gateway, &want->gateway) &&
		    strcmp(now.dev, want->name) == 0)
			return 0;
		ipcmd_make(&c, family_flag(family), "route", "replace", "default", "via", gw, "dev",
			   want->name, NULL);
		if (before->present && before->metric == 0)
			restore_route_cmd(family, before, &back);
		else
			ipcmd_make(&back, family_flag(family), "route", "del", "default", "via", gw, "dev",
				   want->name, NULL);
		r = ipcmd_run(p, &c, err, errlen);
		if (r == 0)
			undo_push(u, &back);
		return r;
	}
	/* No gateway of this family any more: the one 7.2.4 set goes. */
	if (had && now.present && now.metric == 0 && net_addr_equal(&now.gateway, &had->gateway) &&
	    strcmp(now.dev, had->name) == 0) {
		net_addr_text(&had->gateway, gw);
		ipcmd_make(&c, family_flag(family), "route", "del", "default", "via", gw, "dev",
			   had->name, NULL);
		restore_route_cmd(family, before, &back);
		r = ipcmd_run(p, &c, err, errlen);
		if (r == 0)
			undo_push(u, &back);
		return r;
	}
	return 0;
}

int plat_resolv_conf_text(const struct net_addr *dns, size_t n, char *buf, size_t cap)
{
	size_t used = 0;
	int w = snprintf(buf, cap, "# Written by chsmd from GM/T 0088 7.2.4; changes here are replaced.\n");
	if (w < 0 || (size_t)w >= cap)
		return -ENOSPC;
	used = (size_t)w;
	for (size_t i = 0; i < n; i++) {
		char t[NET_ADDR_TEXT_MAX];
		net_addr_text(&dns[i], t);
		w = snprintf(buf + used, cap - used, "nameserver %s\n", t);
		if (w < 0 || (size_t)w >= cap - used)
			return -ENOSPC;
		used += (size_t)w;
	}
	return (int)used;
}

int linux_apply_network(chsm_platform *p, const struct platform_network *next,
			const struct platform_network *prev, char *err, size_t errlen)
{
	/* Large; calls are serialised by p->lock. Addresses are undone before
	 * routes, whose gateways need the addresses back. */
	static struct undo addrs, routes;
	struct net_default_route before4, before6;
	char cidr[NET_ADDR_TEXT_MAX + 8], old_host[256] = "";
	struct ipcmd c, back;
	int r = 0;
	bool host_changed = false;
	addrs.n = routes.n = 0;
	for (size_t i = 0; i < next->n_ifaces; i++) {
		if (if_nametoindex(next->ifaces[i].name) == 0) {
			plat_set_err(err, errlen, "interface %s does not exist on this CHSM",
				next->ifaces[i].name);
			return -ENODEV;
		}
	}
	if ((r = read_default_route(AF_INET, &before4)) < 0 ||
	    (r = read_default_route(AF_INET6, &before6)) < 0) {
		plat_set_err(err, errlen, "cannot read the routing table: %s", strerror(-r));
		return r;
	}
	/* First what the previous configuration set and this one does not:
	 * an old IPv4 primary address removed after a new one of its subnet
	 * was added would take the new (secondary) one with it. */
	for (size_t i = 0; prev && i < prev->n_ifaces; i++) {
		const struct platform_iface *f = &prev->ifaces[i];
		const struct platform_iface *now = find_iface(next, f->name);
		if ((now && net_addr_equal(&now->addr, &f->addr) && now->prefix == f->prefix) ||
		    if_nametoindex(f->name) == 0 || !has_address(f->name, &f->addr, f->prefix))
			continue;
		cidr_text(&f->addr, f->prefix, cidr, sizeof(cidr));
		ipcmd_make(&c, "addr", "del", cidr, "dev", f->name, NULL);
		ipcmd_make(&back, "addr", "add", cidr, "dev", f->name, NULL);
		if ((r = ipcmd_run(p, &c, err, errlen)) < 0)
			goto fail;
		undo_push(&addrs, &back);
	}
	for (size_t i = 0; i < next->n_ifaces; i++) {
		const struct platform_iface *f = &next->ifaces[i];
		ipcmd_make(&c, "link", "set", "dev", f->name, "up", NULL);
		if ((r = ipcmd_run(p, &c, err, errlen)) < 0)
			goto fail;
		if (has_address(f->name, &f->addr, f->prefix))
			continue;
		cidr_text(&f->addr, f->prefix, cidr, sizeof(cidr));
		if (f->addr.family == AF_INET6)
			ipcmd_make(&c, "addr", "add", cidr, "dev", f->name, "nodad", NULL);
		else
			ipcmd_make(&c, "addr", "add", cidr, "dev", f->name, NULL);
		ipcmd_make(&back, "addr", "del", cidr, "dev", f->name, NULL);
		if ((r = ipcmd_run(p, &c, err, errlen)) < 0)
			goto fail;
		undo_push(&addrs, &back);
	}
	if ((r = apply_routes(p, AF_INET, next, prev, &before4, &routes, err, errlen)) < 0 ||
	    (r = apply_routes(p, AF_INET6, next, prev, &before6, &routes, err, errlen)) < 0)
		goto fail;
	if (gethostname(old_host, sizeof(old_host) - 1) < 0) {
		r = -errno;
		plat_set_err(err, errlen, "gethostname: %s", strerror(errno));
		goto fail;
	}
	if (strcmp(old_host, next->hostname) != 0) {
		if (sethostname(next->hostname, strlen(next->hostname)) < 0) {
			r = -errno;
			plat_set_err(err, errlen, "sethostname: %s", strerror(errno));
			goto fail;
		}
		host_changed = true;
	}
	if (next->n_dns > 0) {
		char text[1024];
		int len = plat_resolv_conf_text(next->dns, next->n_dns, text, sizeof(text));
		r = len < 0 ? len : chsm_write_file_atomic(p->resolv_conf, text, (size_t)len, 0644);
		if (r < 0) {
			plat_set_err(err, errlen, "cannot write %s: %s", p->resolv_conf, strerror(-r));
			goto fail;
		}
	}
	return 0;
fail:
	if (host_changed)
		(void)sethostname(old_host, strlen(old_host));
	undo_all(p, &addrs);
	undo_all(p, &routes);
	/* A route the kernel dropped with an address comes back as it was. */
	if (before4.present && before4.metric == 0) {
		restore_route_cmd(AF_INET, &before4, &c);
		undo_push(&routes, &c);
	}
	if (before6.present && before6.metric == 0) {
		restore_route_cmd(AF_INET6, &before6, &c);
		undo_push(&routes, &c);
	}
	undo_all(p, &routes);
	return r;
}

/* ---- time ---- */

int plat_chrony_sources_text(const char *const *servers, size_t n, bool enabled, char *buf,
			     size_t cap)
{
	size_t used = 0;
	int w = snprintf(buf, cap, "# Written by chsmd from GM/T 0088 7.2.5; changes here are replaced.\n");
	if (w < 0 || (size_t)w >= cap)
		return -ENOSPC;
	used = (size_t)w;
	for (size_t i = 0; enabled && i < n; i++) {
		w = snprintf(buf + used, cap - used, "server %s iburst\n", servers[i]);
		if (w < 0 || (size_t)w >= cap - used)
			return -ENOSPC;
		used += (size_t)w;
	}
	return (int)used;
}

int linux_apply_time(chsm_platform *p, const char *const *servers, size_t n, bool enabled,
		     const char **ret_applied, char *err, size_t errlen)
{
	char text[4096];
	int len = plat_chrony_sources_text(servers, n, enabled, text, sizeof(text));
	int r = len < 0 ? len : chsm_write_file_atomic(p->chrony_sources, text, (size_t)len, 0644);
	if (r < 0) {
		plat_set_err(err, errlen, "cannot write %s: %s", p->chrony_sources, strerror(-r));
		return r;
	}
	*ret_applied = "next-start";
	if (!p->chronyc_path[0]) {
		plat_set_err(err, errlen, "chronyc is not installed");
		return 0;
	}
	const char *argv[8];
	size_t k = 0;
	argv[k++] = p->chronyc_path;
	if (p->chronyc_socket[0]) {
		argv[k++] = "-h";
		argv[k++] = p->chronyc_socket;
	}
	argv[k++] = "reload";
	argv[k++] = "sources";
	argv[k] = NULL;
	if (plat_run(argv, err, errlen) == 0)
		*ret_applied = "now";
	return 0;
}

/* ---- VSM namespaces ---- */

struct ns_write {
	const char *ns_path, *file, *value;
	int result;
};

/* Thread body: joins a network namespace (this thread only) and writes
 * one of its sysctl files, which belong to the opener's namespace. */
static void *ns_write_main(void *arg)
{
	struct ns_write *w = arg;
	int fd = open(w->ns_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		w->result = -errno;
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	close(fd);
	fd = open(w->file, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		w->result = -errno;
		return NULL;
	}
	w->result = write(fd, w->value, strlen(w->value)) < 0 ? -errno : 0;
	close(fd);
	return NULL;
}

static int ns_sysctl(const char *ns_path, const char *file, const char *value)
{
	struct ns_write w = {ns_path, file, value, 0};
	pthread_t t;
	int r = pthread_create(&t, NULL, ns_write_main, &w);
	if (r != 0)
		return -r;
	pthread_join(t, NULL);
	return w.result;
}

static int ensure_bridge(chsm_platform *p, char *err, size_t errlen)
{
	struct ipcmd c;
	int r;
	if (if_nametoindex(p->bridge) == 0) {
		ipcmd_make(&c, "link", "add", "name", p->bridge, "type", "bridge", NULL);
		if ((r = ipcmd_run(p, &c, err, errlen)) < 0 && r != -EEXIST)
			return r;
	}
	ipcmd_make(&c, "link", "set", "dev", p->bridge, "up", NULL);
	return ipcmd_run(p, &c, err, errlen);
}

void linux_vsm_release(chsm_platform *p, const char *vsm_id)
{
	char ns[96], path[160], ignored[256];
	struct ipcmd c;
	vsm_netns_name(p, vsm_id, ns, sizeof(ns));
	snprintf(path, sizeof(path), NETNS_RUN_DIR "/%s", ns);
	if (access(path, F_OK) < 0)
		return;
	ipcmd_make(&c, "netns", "delete", ns, NULL);
	(void)ipcmd_run(p, &c, ignored, sizeof(ignored));
}

static void addr_cmd(struct ipcmd *c, const char *ns, const char *op,
		     const struct net_addr *a, int prefix)
{
	char cidr[NET_ADDR_TEXT_MAX + 8];
	cidr_text(a, prefix, cidr, sizeof(cidr));
	if (a->family == AF_INET6 && strcmp(op, "add") == 0)
		ipcmd_make(c, "-n", ns, "addr", "add", cidr, "dev", VSM_IFNAME, "nodad", NULL);
	else
		ipcmd_make(c, "-n", ns, "addr", op, cidr, "dev", VSM_IFNAME, NULL);
}

static void route_cmd(struct ipcmd *c, const char *ns, const struct net_addr *gw)
{
	char t[NET_ADDR_TEXT_MAX];
	net_addr_text(gw, t);
	ipcmd_make(c, "-n", ns, family_flag(gw->family), "route", "replace", "default", "via", t,
		   "dev", VSM_IFNAME, NULL);
}

int linux_vsm_prepare(chsm_platform *p, const struct platform_vsm_net *n, char *netns_path,
		      size_t cap, char *err, size_t errlen)
{
	char ns[96], path[160], host[16];
	struct ipcmd c;
	int r;
	vsm_netns_name(p, n->vsm_id, ns, sizeof(ns));
	vsm_host_ifname(p, n->vsm_id, host);
	snprintf(path, sizeof(path), NETNS_RUN_DIR "/%s", ns);
	if (strlen(path) >= cap) {
		plat_set_err(err, errlen, "namespace path too long");
		return -ENAMETOOLONG;
	}
	linux_vsm_release(p, n->vsm_id);
	if ((r = ensure_bridge(p, err, errlen)) < 0)
		return r;
	ipcmd_make(&c, "netns", "add", ns, NULL);
	if ((r = ipcmd_run(p, &c, err, errlen)) < 0)
		return r;
	/* A MAC of its own per VSM (locally administered, from tag and id),
	 * the same at every start, so neighbours' ARP caches stay right. */
	char mac[18];
	uint32_t h = plat_hash(n->vsm_id) ^ (uint32_t)strtoul(p->tag, NULL, 16);
	snprintf(mac, sizeof(mac), "02:%02x:%02x:%02x:%02x:%02x", (unsigned)(h >> 24) & 0xff,
		 (unsigned)(h >> 16) & 0xff, (unsigned)(h >> 8) & 0xff, (unsigned)h & 0xff,
		 (unsigned)plat_hash(p->tag) & 0xff);
	ipcmd_make(&c, "link", "add", "name", host, "type", "veth", "peer", "name", VSM_IFNAME,
		   "address", mac, "netns", ns, NULL);
	if ((r = ipcmd_run(p, &c, err, errlen)) < 0)
		goto fail;
	ipcmd_make(&c, "link", "set", "dev", host, "master", p->bridge, "up", NULL);
	if ((r = ipcmd_run(p, &c, err, errlen)) < 0)
		goto fail;
	ipcmd_make(&c, "-n", ns, "link", "set", "dev", "lo", "up", NULL);
	if ((r = ipcmd_run(p, &c, err, errlen)) < 0)
		goto fail;
	/* A live move adds the new address beside the old one and then
	 * removes the old: the new one must survive as a secondary's
	 * promotion, not go with its primary. */
	if ((r = ns_sysctl(path, "/proc/sys/net/ipv4/conf/all/promote_secondaries", "1")) < 0) {
		plat_set_err(err, errlen, "promote_secondaries in %s: %s", ns, strerror(-r));
		goto fail;
	}
	addr_cmd(&c, ns, "add", &n->addr, n->prefix);
	if ((r = ipcmd_run(p, &c, err, errlen)) < 0)
		goto fail;
	ipcmd_make(&c, "-n", ns, "link", "set", "dev", VSM_IFNAME, "up", NULL);
	if ((r = ipcmd_run(p, &c, err, errlen)) < 0)
		goto fail;
	if (n->has_gateway) {
		route_cmd(&c, ns, &n->gateway);
		if ((r = ipcmd_run(p, &c, err, errlen)) < 0)
			goto fail;
	}
	snprintf(netns_path, cap, "%s", path);
	return 0;
fail:
	linux_vsm_release(p, n->vsm_id);
	return r;
}

static bool same_address(const struct platform_vsm_net *a, const struct platform_vsm_net *b)
{
	return net_addr_equal(&a->addr, &b->addr) && a->prefix == b->prefix;
}

int linux_move_begin(chsm_platform *p, const struct platform_vsm_net *old,
		     const struct platform_vsm_net *next, char *err, size_t errlen)
{
	char ns[96];
	struct ipcmd c;
	if (same_address(old, next))
		return 0;
	vsm_netns_name(p, next->vsm_id, ns, sizeof(ns));
	addr_cmd(&c, ns, "add", &next->addr, next->prefix);
	int r = ipcmd_run(p, &c, err, errlen);
	return r == -EEXIST ? -EADDRINUSE : r;
}

void linux_move_end(chsm_platform *p, const struct platform_vsm_net *old,
		    const struct platform_vsm_net *next, bool moved)
{
	char ns[96], ignored[256];
	struct ipcmd c;
	vsm_netns_name(p, next->vsm_id, ns, sizeof(ns));
	if (!moved) {
		if (!same_address(old, next)) {
			addr_cmd(&c, ns, "del", &next->addr, next->prefix);
			(void)ipcmd_run(p, &c, ignored, sizeof(ignored));
		}
		return;
	}
	if (!same_address(old, next)) {
		addr_cmd(&c, ns, "del", &old->addr, old->prefix);
		(void)ipcmd_run(p, &c, ignored, sizeof(ignored));
	}
	if (old->has_gateway && (!next->has_gateway || next->gateway.family != old->gateway.family)) {
		ipcmd_make(&c, "-n", ns, family_flag(old->gateway.family), "route", "del", "default",
			   NULL);
		(void)ipcmd_run(p, &c, ignored, sizeof(ignored));
	}
	if (next->has_gateway) {
		route_cmd(&c, ns, &next->gateway);
		(void)ipcmd_run(p, &c, ignored, sizeof(ignored));
	}
}
