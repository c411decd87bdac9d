/*
 * boot.c: the launcher's control messages and records (see boot.h).
 */
#include "chsmd/boot.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chsmd/device.h"
#include "common/util.h"

/* Largest record file read (a trial record is about 50 bytes). */
#define BOOT_RECORD_MAX 128

/* A version of exactly len bytes at s, copied into out. */
static int take_version(const char *s, size_t len, char out[PKG_VERSION_MAX_LEN + 1])
{
	char v[PKG_VERSION_MAX_LEN + 1];
	if (len == 0 || len > PKG_VERSION_MAX_LEN)
		return -EINVAL;
	memcpy(v, s, len);
	v[len] = '\0';
	if (pkg_version_parse(v, NULL) < 0)
		return -EINVAL;
	memcpy(out, v, len + 1);
	return 0;
}

int boot_msg_parse(const char *buf, size_t len, struct boot_msg *ret)
{
	static const struct {
		const char *word;
		enum boot_msg_type type;
		int with_version;
	} kinds[] = {
		{"ready", BOOT_MSG_READY, 1}, {"restart", BOOT_MSG_RESTART, 0},
		{"upgrade", BOOT_MSG_UPGRADE, 1}, {"ok", BOOT_MSG_OK, 0},
	};
	if (!buf || !ret || len < 2 || len > BOOT_MSG_MAX || buf[len - 1] != '\n' ||
	    memchr(buf, '\n', len - 1) || memchr(buf, '\0', len))
		return -EINVAL;
	size_t body = len - 1;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t wl = strlen(kinds[i].word);
		if (body < wl || memcmp(buf, kinds[i].word, wl) != 0)
			continue;
		struct boot_msg m = {.type = kinds[i].type};
		if (!kinds[i].with_version) {
			if (body != wl)
				return -EINVAL;
		} else if (body < wl + 2 || buf[wl] != ' ' ||
			   take_version(buf + wl + 1, body - wl - 1, m.version) < 0) {
			return -EINVAL;
		}
		*ret = m;
		return 0;
	}
	return -EINVAL;
}

int boot_msg_format(const struct boot_msg *m, char *out, size_t cap)
{
	static const char *const words[] = {"ready", "restart", "upgrade", "ok"};
	if (!m || (unsigned)m->type > BOOT_MSG_OK)
		return -EINVAL;
	bool with_version = m->type == BOOT_MSG_READY || m->type == BOOT_MSG_UPGRADE;
	if (with_version && pkg_version_parse(m->version, NULL) < 0)
		return -EINVAL;
	int n = snprintf(out, cap, "%s%s%s\n", words[m->type], with_version ? " " : "",
			 with_version ? m->version : "");
	return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

int boot_send(int fd, const struct boot_msg *m)
{
	char text[BOOT_MSG_MAX + 1];
	int n = boot_msg_format(m, text, sizeof(text));
	if (n < 0)
		return n;
	return send(fd, text, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -errno;
}

int boot_await_ok(int fd, int timeout_ms)
{
	char buf[BOOT_MSG_MAX + 1];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int n = poll(&p, 1, timeout_ms);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ETIMEDOUT;
	ssize_t len = recv(fd, buf, sizeof(buf), 0);
	if (len < 0)
		return -errno;
	if (len == 0)
		return -EPIPE;
	struct boot_msg m;
	return boot_msg_parse(buf, (size_t)len, &m) == 0 && m.type == BOOT_MSG_OK ? 0 : -EINVAL;
}

int boot_trial_parse(const char *buf, size_t len, struct boot_trial *ret)
{
	static const char p_word[] = "previous ", n_word[] = "next ";
	struct boot_trial t;
	memset(&t, 0, sizeof(t));
	const char *nl = buf && len > 0 ? memchr(buf, '\n', len) : NULL;
	if (!nl || !ret || memchr(buf, '\0', len))
		return -EINVAL;
	size_t l1 = (size_t)(nl - buf);
	if (l1 < sizeof(p_word) || memcmp(buf, p_word, sizeof(p_word) - 1) != 0)
		return -EINVAL;
	const char *pv = buf + sizeof(p_word) - 1;
	size_t pl = l1 - (sizeof(p_word) - 1);
	if (!(pl == 1 && pv[0] == '-') && take_version(pv, pl, t.previous) < 0)
		return -EINVAL;
	const char *l2 = nl + 1;
	size_t rest = len - l1 - 1;
	if (rest < sizeof(n_word) + 1 || l2[rest - 1] != '\n' || memchr(l2, '\n', rest - 1) ||
	    memcmp(l2, n_word, sizeof(n_word) - 1) != 0 ||
	    take_version(l2 + sizeof(n_word) - 1, rest - sizeof(n_word), t.next) < 0)
		return -EINVAL;
	*ret = t;
	return 0;
}

/* <state>/boot/<name> into out (and the folder into dir, when given). */
static int boot_path(const char *state_dir, const char *name, char *out, size_t cap)
{
	char dir[PATH_MAX];
	int r = device_path(state_dir, "boot", dir, sizeof(dir));
	if (r < 0)
		return r;
	if (!name)
		return snprintf(out, cap, "%s", dir) >= (int)cap ? -ENAMETOOLONG : 0;
	return snprintf(out, cap, "%s/%s", dir, name) >= (int)cap ? -ENAMETOOLONG : 0;
}

/* Reads boot/<name> (at most BOOT_RECORD_MAX - 1 bytes) into buf
 * (NUL-terminated); *ret_len bytes. */
static int read_record(const char *state_dir, const char *name, char *buf, size_t cap,
		       size_t *ret_len)
{
	char path[PATH_MAX], *data = NULL;
	size_t len = 0;
	int r = boot_path(state_dir, name, path, sizeof(path));
	if (r == 0)
		r = chsm_read_file(path, cap - 1, &data, &len);
	if (r == -EFBIG)
		r = -EINVAL;
	if (r == 0) {
		memcpy(buf, data, len + 1);
		*ret_len = len;
	}
	free(data);
	return r;
}

/* Replaces boot/<name> with text durably, or removes it for NULL. */
static int write_record(const char *state_dir, const char *name, const char *text)
{
	char dir[PATH_MAX], path[PATH_MAX];
	int r;
	if ((r = boot_path(state_dir, NULL, dir, sizeof(dir))) < 0 ||
	    (r = boot_path(state_dir, name, path, sizeof(path))) < 0)
		return r;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (text)
		return chsm_write_file_atomic(path, text, strlen(text), 0600);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return chsm_fsync_parent(path);
}

int boot_current_read(const char *state_dir, char *ret)
{
	char buf[BOOT_RECORD_MAX];
	size_t len;
	int r = read_record(state_dir, "current", buf, sizeof(buf), &len);
	if (r < 0)
		return r;
	if (len < 2 || buf[len - 1] != '\n')
		return -EINVAL;
	return take_version(buf, len - 1, ret);
}

int boot_current_write(const char *state_dir, const char *version)
{
	char text[PKG_VERSION_MAX_LEN + 2];
	if (!version || !*version)
		return write_record(state_dir, "current", NULL);
	if (pkg_version_parse(version, NULL) < 0)
		return -EINVAL;
	snprintf(text, sizeof(text), "%s\n", version);
	return write_record(state_dir, "current", text);
}

int boot_trial_read(const char *state_dir, struct boot_trial *ret)
{
	char buf[BOOT_RECORD_MAX];
	size_t len;
	int r = read_record(state_dir, "trial", buf, sizeof(buf), &len);
	return r < 0 ? r : boot_trial_parse(buf, len, ret);
}

int boot_trial_write(const char *state_dir, const struct boot_trial *t)
{
	char text[BOOT_RECORD_MAX];
	if (!t)
		return write_record(state_dir, "trial", NULL);
	if ((t->previous[0] && pkg_version_parse(t->previous, NULL) < 0) ||
	    pkg_version_parse(t->next, NULL) < 0)
		return -EINVAL;
	snprintf(text, sizeof(text), "previous %s\nnext %s\n", t->previous[0] ? t->previous : "-",
		 t->next);
	return write_record(state_dir, "trial", text);
}

int boot_version_program(const char *state_dir, const char *version, char *out, size_t cap)
{
	char versions[PATH_MAX], real_versions[PATH_MAX], dir[PATH_MAX], real_dir[PATH_MAX];
	char prog[PATH_MAX];
	struct stat st;
	int r;
	if (!version || pkg_version_parse(version, NULL) < 0)
		return -EINVAL;
	if ((r = device_path(state_dir, "versions", versions, sizeof(versions))) < 0)
		return r;
	if (snprintf(dir, sizeof(dir), "%s/%s", versions, version) >= (int)sizeof(dir) ||
	    snprintf(prog, sizeof(prog), "%s/chsmd", dir) >= (int)sizeof(prog))
		return -ENAMETOOLONG;
	if (lstat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOENT;
	if (!realpath(versions, real_versions) || !realpath(dir, real_dir))
		return -errno;
	size_t vl = strlen(real_versions);
	if (strncmp(real_dir, real_versions, vl) != 0 || real_dir[vl] != '/' ||
	    strchr(real_dir + vl + 1, '/'))
		return -ENOENT;
	if (lstat(prog, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -ENOENT;
	if (access(prog, X_OK) < 0)
		return -errno;
	if (snprintf(out, cap, "%s", prog) >= (int)cap)
		return -ENAMETOOLONG;
	return 0;
}
