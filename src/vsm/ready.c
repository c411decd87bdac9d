/*
 * ready.c: see ready.h.
 */
#include "vsm/ready.h"

#include <errno.h>
#include <string.h>

#ifdef CHSM_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

/* The errors a bind, listen or exec can plausibly report. */
static const struct {
	int err;
	const char *name;
} errno_names[] = {
	{ EADDRINUSE, "EADDRINUSE" },     { EADDRNOTAVAIL, "EADDRNOTAVAIL" },
	{ EACCES, "EACCES" },             { EPERM, "EPERM" },
	{ EAFNOSUPPORT, "EAFNOSUPPORT" }, { EINVAL, "EINVAL" },
	{ EMFILE, "EMFILE" },             { ENFILE, "ENFILE" },
	{ ENOMEM, "ENOMEM" },             { ENOBUFS, "ENOBUFS" },
	{ ENOENT, "ENOENT" },             { ENOEXEC, "ENOEXEC" },
	{ ENOTDIR, "ENOTDIR" },           { ELOOP, "ELOOP" },
	{ ENAMETOOLONG, "ENAMETOOLONG" }, { ETXTBSY, "ETXTBSY" },
	{ E2BIG, "E2BIG" },               { ENODEV, "ENODEV" },
	{ ENETUNREACH, "ENETUNREACH" },   { EPROTONOSUPPORT, "EPROTONOSUPPORT" },
	{ EIO, "EIO" },
};

const char *vsm_errno_name(int err)
{
	for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (errno_names[i].err == err)
			return errno_names[i].name;
	return "EIO";
}

static int errno_from_name(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
		if (strlen(errno_names[i].name) == len && memcmp(errno_names[i].name, name, len) == 0)
			return errno_names[i].err;
	return EIO;
}

static size_t append(char *buf, size_t pos, size_t cap, const char *s)
{
	for (; *s && pos < cap; s++)
		buf[pos++] = (*s == '\n' || *s == '\r') ? ' ' : *s;
	return pos;
}

size_t vsm_ready_error_line(int err, const char *text, char *buf, size_t buflen)
{
	/* Room for the newline and the NUL. */
	size_t cap = buflen - 2, pos = 0;
	pos = append(buf, pos, cap, "ERROR ");
	pos = append(buf, pos, cap, vsm_errno_name(err));
	pos = append(buf, pos, cap, " ");
	pos = append(buf, pos, cap, text ? text : "");
	buf[pos++] = '\n';
	buf[pos] = '\0';
	return pos;
}

int vsm_ready_parse(const char *line, int *ret_err, const char **ret_text)
{
	if (strcmp(line, "READY") == 0) {
		*ret_err = 0;
		*ret_text = "";
		return 0;
	}
	if (strncmp(line, "ERROR ", 6) != 0)
		return -EPROTO;
	const char *name = line + 6, *end = strchr(name, ' ');
	size_t len = end ? (size_t)(end - name) : strlen(name);
	if (len == 0)
		return -EPROTO;
	*ret_err = -errno_from_name(name, len);
	*ret_text = end ? end + 1 : "";
	return 0;
}

int vsm_wait_scale(void)
{
#ifdef CHSM_HAVE_VALGRIND
	return RUNNING_ON_VALGRIND ? VSM_VALGRIND_WAIT_SCALE : 1;
#else
	return 1;
#endif
}
