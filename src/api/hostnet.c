/*
 * hostnet.c: the API's side of the platform (platform/platform.h): the
 * strict checks of 7.2.4, turning stored networks into the platform's
 * structures, and the VSM network steps of start, stop and 7.3.3's live
 * move.
 *
 * Every function here works with ctx->platform NULL as with the sandbox
 * (unit builds without a platform).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "api/internal.h"
#include "common/log.h"

static bool is_linux(const struct api_ctx *ctx)
{
	return ctx->platform && platform_kind_of(ctx->platform) == PLATFORM_LINUX;
}

/* ---- 7.2.4 ---- */

/* Fails c with 1003 and a message naming the element and the reason. */
#define INVALID(c, ...) (api_fail((c), GMT_E_PARAM_INVALID, __VA_ARGS__), false)

static bool parse_iface(struct api_call *c, const json_t *it, size_t i, struct platform_iface *f)
{
	const char *name = json_string_value(json_object_get(it, "name"));
	const char *addr = json_string_value(json_object_get(it, "address"));
	const char *gw = json_string_value(json_object_get(it, "gateway"));
	const char *why;
	memset(f, 0, sizeof(*f));
	if (!platform_ifname_valid(name))
		return INVALID(c, "parameter invalid: interfaces[%zu].name (1-15 characters of "
			       "[A-Za-z0-9_.-], starting with a letter or digit)", i);
	snprintf(f->name, sizeof(f->name), "%s", name);
	if (net_cidr_parse(addr, &f->addr, &f->prefix) < 0 || f->prefix == 0)
		return INVALID(c, "parameter invalid: interfaces[%zu].address (an IPv4 or IPv6 "
			       "address with a prefix of 1-32 or 1-128)", i);
	if ((why = net_addr_unusable(&f->addr, f->prefix)))
		return INVALID(c, "parameter invalid: interfaces[%zu].address (%s)", i, why);
	if (!gw)
		return true;
	if (net_addr_parse(gw, &f->gateway) < 0 || f->gateway.family != f->addr.family)
		return INVALID(c, "parameter invalid: interfaces[%zu].gateway (an address of the "
			       "interface's family)", i);
	f->has_gateway = true;
	/* An IPv6 router is usually known by its link-local address, which is
	 * on-link whatever the prefix. */
	why = net_addr_unusable(&f->gateway, f->prefix);
	bool link_local = why && strcmp(why, "link-local") == 0 && f->gateway.family == AF_INET6;
	if (link_local)
		return true;
	if (!net_prefix_contains(&f->addr, f->prefix, &f->gateway))
		return INVALID(c, "parameter invalid: interfaces[%zu].gateway (not inside the "
			       "interface's prefix)", i);
	if (why)
		return INVALID(c, "parameter invalid: interfaces[%zu].gateway (%s)", i, why);
	if (net_addr_equal(&f->gateway, &f->addr))
		return INVALID(c, "parameter invalid: interfaces[%zu].gateway (the interface's own "
			       "address)", i);
	return true;
}

bool api_parse_chsm_network(struct api_call *c, const json_t *body, struct platform_network *ret)
{
	json_t *ifs = json_object_get(body, "interfaces"), *dns = json_object_get(body, "dns"), *it;
	const char *host = json_string_value(json_object_get(body, "hostname"));
	size_t i;
	memset(ret, 0, sizeof(*ret));
	if (!api_valid_hostname(host))
		return INVALID(c, "parameter invalid: hostname");
	snprintf(ret->hostname, sizeof(ret->hostname), "%s", host);
	if (json_array_size(ifs) < 1 || json_array_size(ifs) > CHSM_MAX_NETWORK_INTERFACES)
		return INVALID(c, "parameter invalid: interfaces (1 to %d)", CHSM_MAX_NETWORK_INTERFACES);
	json_array_foreach(ifs, i, it) {
		struct platform_iface *f = &ret->ifaces[i];
		if (!parse_iface(c, it, i, f))
			return false;
		for (size_t j = 0; j < i; j++) {
			const struct platform_iface *o = &ret->ifaces[j];
			if (strcmp(o->name, f->name) == 0)
				return INVALID(c, "parameter invalid: interfaces[%zu] (the name of "
					       "interfaces[%zu])", i, j);
			if (net_addr_equal(&o->addr, &f->addr))
				return INVALID(c, "parameter invalid: interfaces[%zu].address (the "
					       "address of interfaces[%zu])", i, j);
			if (f->has_gateway && o->has_gateway && o->gateway.family == f->gateway.family)
				return INVALID(c, "parameter invalid: interfaces[%zu].gateway (a second "
					       "default gateway of one family; interfaces[%zu] has one)", i, j);
		}
		ret->n_ifaces = i + 1;
	}
	if (json_array_size(dns) > CHSM_MAX_DNS_SERVERS)
		return INVALID(c, "parameter invalid: dns (0 to %d)", CHSM_MAX_DNS_SERVERS);
	json_array_foreach(dns, i, it) {
		struct net_addr *a = &ret->dns[i];
		const char *why = NULL;
		if (!json_is_string(it) || net_addr_parse(json_string_value(it), a) < 0)
			return INVALID(c, "parameter invalid: dns[%zu]", i);
		/* A local resolver (127.0.0.53, ::1) is a fine DNS server. */
		why = net_addr_is_loopback(a) ? NULL : net_addr_unusable(a, -1);
		if (why)
			return INVALID(c, "parameter invalid: dns[%zu] (%s)", i, why);
		ret->n_dns = i + 1;
	}
	return true;
}

/* The stored 7.2.4 document as the platform's structure; false when there
 * is none (or it no longer passes the checks). */
static bool stored_network(struct api_ctx *ctx, struct platform_network *ret)
{
	char *text = NULL;
	bool ok = false;
	if (store_setting_get(ctx->store, "config.network", &text) < 0)
		return false;
	json_t *doc = json_loads(text, 0, NULL);
	free(text);
	if (json_is_object(doc)) {
		struct api_call scratch;
		memset(&scratch, 0, sizeof(scratch));
		ok = api_parse_chsm_network(&scratch, doc, ret);
	}
	json_decref(doc);
	return ok;
}

/* Serialises 7.2.4: read the previous, apply, store. */
static pthread_mutex_t network_lock = PTHREAD_MUTEX_INITIALIZER;

void api_chsm_network_apply(struct api_call *c, const struct platform_network *next)
{
	struct api_ctx *ctx = c->ctx;
	struct platform_network prev;
	const char *applied = "stored";
	char err[256] = "";
	pthread_mutex_lock(&network_lock);
	bool have_prev = stored_network(ctx, &prev);
	int r = ctx->platform ? platform_apply_network(ctx->platform, next, have_prev ? &prev : NULL,
						       &applied, err, sizeof(err))
			      : 0;
	if (r == -ENODEV) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: %s", err);
		goto out;
	}
	if (r < 0) {
		chsm_log(CHSM_LOG_ERROR, "config.network.failed", "request_id", c->request_id, "error",
			 err, NULL);
		api_fail(c, GMT_E_INTERNAL, "the network configuration could not be applied (nothing "
			 "changed): %s", err);
		goto out;
	}
	char *text = json_dumps(c->body, JSON_COMPACT | JSON_SORT_KEYS);
	r = text ? store_setting_set(ctx->store, "config.network", text) : -ENOMEM;
	free(text);
	if (r < 0) {
		/* Applied but not recorded: put the host back as recorded. */
		if (strcmp(applied, "now") == 0)
			(void)platform_apply_network(ctx->platform, have_prev ? &prev : next, next,
						     &applied, err, sizeof(err));
		api_fail(c, GMT_E_STORAGE, NULL);
		goto out;
	}
	chsm_log(CHSM_LOG_INFO, "config.network", "request_id", c->request_id, "applied", applied,
		 NULL);
	json_t *d = json_deep_copy(c->body);
	json_object_set_new(d, "applied", json_string(applied));
	api_ok(c, d);
out:
	pthread_mutex_unlock(&network_lock);
}

void api_platform_resume(struct api_ctx *ctx)
{
	char err[256] = "";
	struct platform_network net;
	const char *applied = "";
	if (!is_linux(ctx))
		return;
	int r = platform_start(ctx->platform, err, sizeof(err));
	if (r < 0)
		chsm_log(CHSM_LOG_WARNING, "platform.cleanup", "error", err, NULL);
	if (stored_network(ctx, &net)) {
		r = platform_apply_network(ctx->platform, &net, &net, &applied, err, sizeof(err));
		chsm_log(r < 0 ? CHSM_LOG_ERROR : CHSM_LOG_INFO, "config.network.reapplied", "error",
			 r < 0 ? err : "", NULL);
	}
	const char *tapplied = "";
	r = api_time_apply(ctx, NULL, &tapplied, err, sizeof(err));
	if (r != -ENOENT)
		chsm_log(r < 0 ? CHSM_LOG_ERROR : CHSM_LOG_INFO, "config.ntp.reapplied", "applied",
			 r < 0 ? "" : tapplied, "error", err, NULL);
}

int api_time_apply(struct api_ctx *ctx, const json_t *cfg, const char **ret_applied, char *err,
		   size_t errlen)
{
	const char *servers[CHSM_MAX_NTP_SERVERS];
	json_t *stored = NULL, *it;
	size_t n = 0, i;
	*ret_applied = "stored";
	if (!ctx->platform)
		return 0;
	if (!cfg) {
		char *text = NULL;
		if (store_setting_get(ctx->store, "config.ntp", &text) < 0)
			return -ENOENT;
		stored = json_loads(text, 0, NULL);
		free(text);
		cfg = stored;
	}
	json_array_foreach(json_object_get(cfg, "servers"), i, it) {
		if (n < CHSM_MAX_NTP_SERVERS && json_is_string(it))
			servers[n++] = json_string_value(it);
	}
	int r = platform_apply_time(ctx->platform, servers, n,
				    !json_is_false(json_object_get(cfg, "enabled")), ret_applied, err,
				    errlen);
	json_decref(stored);
	return r;
}

/* ---- VSM networks ---- */

int api_vsm_platform_net(const char *id, const struct store_vsm_network *n,
			 struct platform_vsm_net *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->vsm_id = id;
	ret->prefix = n->prefix_length;
	if (net_addr_parse(n->ip_address, &ret->addr) < 0)
		return -EINVAL;
	if (n->gateway[0]) {
		if (net_addr_parse(n->gateway, &ret->gateway) < 0)
			return -EINVAL;
		ret->has_gateway = true;
	}
	return 0;
}

int api_vsm_net_prepare(struct api_ctx *ctx, const char *id, const struct store_vsm_network *n,
			char *netns, size_t cap, char *err, size_t errlen)
{
	struct platform_vsm_net pn;
	netns[0] = '\0';
	if (!ctx->platform)
		return 0;
	if (api_vsm_platform_net(id, n, &pn) < 0) {
		snprintf(err, errlen, "invalid stored network");
		return -EINVAL;
	}
	return platform_vsm_prepare(ctx->platform, &pn, netns, cap, err, errlen);
}

void api_vsm_net_release(struct api_ctx *ctx, const char *id)
{
	if (ctx->platform)
		platform_vsm_release(ctx->platform, id);
}

bool api_vsm_ip_free(struct api_call *c, const struct store_vsm_network *n, const char *self)
{
	struct store_vsm *v = NULL;
	size_t count = 0;
	if (!is_linux(c->ctx))
		return true;
	if (store_vsm_list(c->ctx->store, &v, &count) < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		return false;
	}
	bool ok = true;
	for (size_t i = 0; i < count && ok; i++) {
		if (strcmp(v[i].id, self) != 0 && v[i].network.configured &&
		    strcmp(v[i].network.ip_address, n->ip_address) == 0) {
			api_fail(c, GMT_E_ADDRESS_IN_USE, "network address already in use: %s is VSM %s's "
				 "(on the linux platform each VSM has an interface of its own)",
				 n->ip_address, v[i].id);
			ok = false;
		}
	}
	free(v);
	return ok;
}

/* The code of a failed move. */
static void move_failed(struct api_call *c, int r, const char *ip, const char *err)
{
	if (r == -EADDRINUSE)
		api_fail(c, GMT_E_ADDRESS_IN_USE, "network address already in use: %s", err);
	else if (r == -EADDRNOTAVAIL)
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: ipAddress (%s is not an address "
			 "this CHSM can serve: %s)", ip, err);
	else
		api_fail(c, GMT_E_INTERNAL, "the VSM could not move to its new address (it still "
			 "serves the old one): %s", err);
}

int api_vsm_move(struct api_call *c, const char *id, const struct store_vsm_network *old,
		 const struct store_vsm_network *next)
{
	struct api_ctx *ctx = c->ctx;
	struct platform_vsm_net po, pn;
	char err[256] = "";
	int r;
	if (api_vsm_platform_net(id, old, &po) < 0 || api_vsm_platform_net(id, next, &pn) < 0) {
		api_fail(c, GMT_E_INTERNAL, "invalid stored network");
		return -EINVAL;
	}
	if (ctx->platform && (r = platform_vsm_move_begin(ctx->platform, &po, &pn, err,
							  sizeof(err))) < 0) {
		move_failed(c, r, next->ip_address, err);
		return r;
	}
	r = 0;
	if (strcmp(old->ip_address, next->ip_address) != 0 || old->port != next->port)
		r = vsm_supervisor_move(ctx->supervisor, id, next->ip_address, next->port, err,
					sizeof(err));
	if (ctx->platform)
		platform_vsm_move_end(ctx->platform, &po, &pn, r == 0);
	if (r < 0 && r != -ENOENT)
		move_failed(c, r, next->ip_address, err);
	return r;
}
