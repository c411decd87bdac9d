/*
 * platform.h: everything chsmd does to the host it runs on, behind one
 * small interface with two backends (docs/architecture.md, "Platform";
 * docs/operations.md §3c):
 *
 *  - "sandbox" (the default) needs no privileges: the host network and
 *    time configuration are only validated, stored and reported by the
 *    API; VSMs run in chsmd's own network namespace and bind their
 *    configured address, which must be local (127.0.0.0/8, ::1 or an
 *    address of the host);
 *  - "linux" (root) applies 7.2.4 to the host's interfaces, routes,
 *    host name and resolv.conf, writes the chrony sources file of 7.2.5
 *    and has chronyd reload it, and runs each VSM in a network namespace
 *    of its own with a veth pair whose host end is on a bridge.
 *
 * Guarantees:
 *  - The linux backend changes the host only through the `ip` command
 *    (iproute2), run by posix_spawn with a fixed argument vector, an
 *    empty environment and no shell, and through sethostname(2), atomic
 *    file replacement and chronyc (likewise without a shell). Every string
 *    it passes comes from a parsed address (canonical text) or a name
 *    checked against [A-Za-z0-9_.-] starting with a letter or digit.
 *  - platform_apply_network either applies the whole configuration or
 *    undoes every step it made and leaves the host as it was.
 *  - Names made for VSMs carry a tag of the CHSM (from its device id), so
 *    that several CHSMs on one host never touch each other's namespaces;
 *    platform_start removes this CHSM's leftovers.
 *  - Thread-safe: calls are serialised inside. Never logs: errors come
 *    back as -errno with a short message in err.
 */
#ifndef CHSM_PLATFORM_H
#define CHSM_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>

#include "common/limits.h"
#include "platform/netaddr.h"

typedef struct chsm_platform chsm_platform;

enum platform_kind { PLATFORM_SANDBOX, PLATFORM_LINUX };

/* Where the linux backend's defaults point. */
#define PLATFORM_DEFAULT_BRIDGE         "chsm-br0"
#define PLATFORM_DEFAULT_RESOLV_CONF    "/etc/resolv.conf"
#define PLATFORM_DEFAULT_CHRONY_SOURCES "/etc/chrony/sources.d/openchsm.sources"
/* Longest interface name Linux accepts (IFNAMSIZ - 1). */
#define PLATFORM_IFNAME_MAX 15

struct platform_options {
	enum platform_kind kind;
	const char *instance;        /* this CHSM's device id (names its VSM namespaces) */
	/* linux only; NULL: the defaults above */
	const char *vsm_bridge;
	const char *resolv_conf;
	const char *chrony_sources;
	const char *chronyc_socket;  /* chronyc -h; NULL: chronyc's default */
};

/* Creates a platform. Returns 0, -EINVAL (bad options: an invalid bridge
 * name, a relative path), -EPERM (linux without root) or -ENOMEM. */
int platform_new(const struct platform_options *o, chsm_platform **ret);
void platform_free(chsm_platform *p);
enum platform_kind platform_kind_of(const chsm_platform *p);
const char *platform_name(const chsm_platform *p);   /* "sandbox" or "linux" */

/* At chsmd start, before any VSM starts: removes what an earlier run of
 * this CHSM left (linux: its VSM namespaces). Returns 0 or -errno. */
int platform_start(chsm_platform *p, char *err, size_t errlen);

/* At chsmd's clean stop, once no VSM process runs: removes this CHSM's
 * VSM namespaces (linux). */
void platform_stop(chsm_platform *p);

/* ---- the host network (7.2.4) ---- */

struct platform_iface {
	char name[PLATFORM_IFNAME_MAX + 1];
	struct net_addr addr;
	int prefix;
	bool has_gateway;
	struct net_addr gateway;
};

struct platform_network {
	char hostname[254];
	struct platform_iface ifaces[CHSM_MAX_NETWORK_INTERFACES];
	size_t n_ifaces;
	struct net_addr dns[CHSM_MAX_DNS_SERVERS];
	size_t n_dns;
};

/* True when name is an interface name the platform passes on:
 * 1-15 characters of [A-Za-z0-9_.-], the first a letter or digit. */
bool platform_ifname_valid(const char *name);

/* Applies next; prev (may be NULL) is what was applied before, whose
 * addresses and default routes next replaces. Sets *ret_applied to
 * "stored" (sandbox: nothing done) or "now". Returns 0; -ENODEV when an
 * interface does not exist (err names it; nothing changed); or another
 * -errno when a step failed, after every step made was undone (err says
 * which step and why). */
int platform_apply_network(chsm_platform *p, const struct platform_network *next,
			   const struct platform_network *prev, const char **ret_applied,
			   char *err, size_t errlen);

/* ---- time service (7.2.5) ---- */

/* Points the host's time service at servers (enabled false: none).
 * Sets *ret_applied to "stored" (sandbox), "now" (linux: the sources file
 * is written and chronyd reloaded it) or "next-start" (linux: written, but
 * chronyd did not answer; it reads the file when it starts). Returns 0, or
 * -errno when the file could not be written (it is then unchanged). */
int platform_apply_time(chsm_platform *p, const char *const *servers, size_t n, bool enabled,
			const char **ret_applied, char *err, size_t errlen);

/* ---- VSM networks (7.3.3, 7.3.7) ---- */

struct platform_vsm_net {
	const char *vsm_id;
	struct net_addr addr;
	int prefix;
	bool has_gateway;
	struct net_addr gateway;
};

/* Makes the network VSM n->vsm_id runs in, before its process starts.
 * Sandbox: checks that the address is local (-EADDRNOTAVAIL otherwise)
 * and sets netns_path to "". Linux: (re)creates its namespace, veth pair,
 * address and route, and sets netns_path to the namespace's file. Returns
 * 0 or -errno (nothing left behind). */
int platform_vsm_prepare(chsm_platform *p, const struct platform_vsm_net *n, char *netns_path,
			 size_t cap, char *err, size_t errlen);

/* Removes what platform_vsm_prepare made (linux); nothing in sandbox.
 * Accepts a VSM that has nothing. */
void platform_vsm_release(chsm_platform *p, const char *vsm_id);

/* Before a running VSM's listener moves from old to next: makes next's
 * address usable (sandbox: checks it is local; linux: adds it beside the
 * old one). Returns 0 or -errno (-EADDRNOTAVAIL: not an address this CHSM
 * can serve). */
int platform_vsm_move_begin(chsm_platform *p, const struct platform_vsm_net *old,
			    const struct platform_vsm_net *next, char *err, size_t errlen);
/* After the move: moved, the old address goes and next's route is set;
 * not moved, next's address goes. Best effort (linux). */
void platform_vsm_move_end(chsm_platform *p, const struct platform_vsm_net *old,
			   const struct platform_vsm_net *next, bool moved);

/* Reboot is not the platform's: chsmd re-executes itself (7.2.11). */

#endif
