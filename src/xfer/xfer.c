/*
 * xfer.c: uploads and downloads of images, backups and packages
 * (PROFILE.md 7.2.6, §10) over HTTP(S) with libcurl's easy interface, and
 * over file:// with plain system calls.
 *
 * Guarantees: memory does not grow with the file (64 KiB pieces, SM3 hashed
 * as the bytes pass); configured header values and URL query strings never
 * reach msg, and the header lines built here are wiped after use; TLS peers
 * are always verified; a file:// upload is atomic and durable (temp file,
 * fsync, rename, fsync of the folder).
 */
#include "xfer/xfer.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "proto/codes.h"

#define XFER_PIECE        (64 * 1024) /* bytes read or written at once */
#define XFER_NAME_MAX     128
#define XFER_MAX_REDIRECT 3
#define XFER_HEADERS_MAX  64          /* configured headers per transfer */

enum xfer_dir { XFER_UP, XFER_DOWN };

static int fail_code(enum xfer_dir dir)
{
	return dir == XFER_UP ? GMT_E_UPLOAD : GMT_E_DOWNLOAD;
}

__attribute__((format(printf, 3, 4))) static void set_msg(char *msg, size_t msglen,
							   const char *fmt, ...)
{
	if (!msg || msglen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
}

/* ---- URLs ---- */

static bool has_prefix_ci(const char *s, const char *prefix)
{
	return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static bool scheme_supported(const char *url)
{
	return has_prefix_ci(url, "https://") || has_prefix_ci(url, "http://") ||
	       has_prefix_ci(url, "file://");
}

int xfer_object_url(const char *prefix, const char *name, char *out, size_t cap)
{
	if (!prefix || !name || !out)
		return -EINVAL;
	size_t nlen = strlen(name);
	if (nlen == 0 || nlen > XFER_NAME_MAX || !chsm_str_charset(name, nlen, "._-") ||
	    strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -EINVAL;
	if (!scheme_supported(prefix) || strchr(prefix, '#'))
		return -EINVAL;
	for (const char *p = prefix; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return -EINVAL;
	const char *authority = strstr(prefix, "://") + 3;
	size_t base_len = strcspn(prefix, "?");
	const char *query = prefix[base_len] == '?' ? prefix + base_len : "";
	if (base_len == (size_t)(authority - prefix))
		return -EINVAL; /* nothing after "scheme://" */
	bool slash = base_len > 0 && prefix[base_len - 1] == '/';
	size_t need = base_len + (slash ? 0 : 1) + nlen + strlen(query) + 1;
	if (need > cap || need > XFER_URL_MAX)
		return -ENAMETOOLONG;
	snprintf(out, cap, "%.*s%s%s%s", (int)base_len, prefix, slash ? "" : "/", name, query);
	return 0;
}

void xfer_redact_url(const char *url, char *out, size_t cap)
{
	if (!out || cap == 0)
		return;
	out[0] = '\0';
	if (!url)
		return;
	const char *sep = strstr(url, "://");
	size_t scheme_len = sep ? (size_t)(sep - url) : 0;
	if (!sep || scheme_len == 0 || scheme_len > 16 ||
	    !chsm_str_charset(url, scheme_len, "+-.")) {
		snprintf(out, cap, "(unparsable URL)");
		return;
	}
	const char *auth = sep + 3;
	size_t auth_len = strcspn(auth, "/?#");
	const char *host = auth;
	for (size_t i = 0; i < auth_len; i++)
		if (auth[i] == '@')
			host = auth + i + 1; /* the last '@' ends the userinfo */
	size_t host_len = auth_len - (size_t)(host - auth);
	const char *path = auth + auth_len;
	size_t path_len = strcspn(path, "?#");
	size_t n = 0;
	int w = snprintf(out, cap, "%.*s://%.*s%.*s", (int)scheme_len, url, (int)host_len, host,
			 (int)path_len, path);
	n = w < 0 ? 0 : (size_t)w >= cap ? cap - 1 : (size_t)w;
	/* Control characters would let a URL forge log lines. */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			out[i] = '?';
}

/* ---- local files ---- */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Reads exactly len bytes of fd at off. -EIO when the file ends early. */
static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	while (len > 0) {
		ssize_t r = pread(fd, p, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

/* The absolute path of a file:// URL (authority empty or "localhost"),
 * percent-decoded, without control characters, "." or ".." segments,
 * query or fragment. *ret_path is malloc'ed. -EINVAL otherwise. */
static int file_url_path(const char *url, char **ret_path)
{
	const char *p = url + strlen("file://");
	if (has_prefix_ci(p, "localhost/"))
		p += strlen("localhost");
	if (*p != '/' || strpbrk(p, "?#"))
		return -EINVAL;
	size_t len = strlen(p);
	if (len >= PATH_MAX)
		return -EINVAL;
	char *path = malloc(len + 1);
	if (!path)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '%') {
			int hi = i + 2 < len ? chsm_hex_value(p[i + 1]) : -1;
			int lo = hi >= 0 ? chsm_hex_value(p[i + 2]) : -1;
			if (lo < 0)
				goto bad;
			path[n++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			path[n++] = p[i];
		}
	}
	path[n] = '\0';
	/* No NUL or control character (they would forge lines where the
	 * path is shown). */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
			goto bad;
	/* Refuse "." and ".." segments. */
	for (const char *s = path; *s;) {
		const char *e = strchr(s, '/');
		size_t sl = e ? (size_t)(e - s) : strlen(s);
		if ((sl == 1 && s[0] == '.') || (sl == 2 && s[0] == '.' && s[1] == '.'))
			goto bad;
		s += sl;
		if (*s == '/')
			s++;
	}
	if (path[n - 1] == '/')
		goto bad; /* names a folder */
	*ret_path = path;
	return 0;
bad:
	free(path);
	return -EINVAL;
}

static int file_upload(const char *url, int fd, uint64_t size, char *msg, size_t msglen)
{
	char *path = NULL, *tmp = NULL, *buf = NULL;
	int dirfd = -1, out = -1, rc;
	bool created = false;
	int r = file_url_path(url, &path);
	if (r == -ENOMEM)
		return GMT_E_INTERNAL;
	if (r < 0) {
		set_msg(msg, msglen, "upload: a file:// URL needs an absolute path without '.' or "
				     "'..' segments, query or fragment");
		return GMT_E_UPLOAD;
	}
	char *slash = strrchr(path, '/');
	const char *base = slash + 1;
	*slash = '\0';
	const char *folder = slash == path ? "/" : path;
	dirfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		set_msg(msg, msglen, "upload: folder %s: %s", folder, strerror(errno));
		rc = GMT_E_UPLOAD;
		goto done;
	}
	uint8_t rnd[8];
	char hex[2 * sizeof(rnd) + 1];
	if (crypto_random(rnd, sizeof(rnd)) < 0) {
		rc = GMT_E_INTERNAL;
		goto done;
	}
	chsm_hex_encode(rnd, sizeof(rnd), hex);
	size_t tlen = strlen(base) + strlen(".tmp-") + strlen(hex) + 1;
	tmp = malloc(tlen);
	buf = malloc(XFER_PIECE);
	if (!tmp || !buf) {
		rc = GMT_E_INTERNAL;
		goto done;
	}
	snprintf(tmp, tlen, "%s.tmp-%s", base, hex);
	out = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0) {
		set_msg(msg, msglen, "upload: create %s in %s: %s", tmp, folder, strerror(errno));
		rc = GMT_E_UPLOAD;
		goto done;
	}
	created = true;
	for (uint64_t off = 0; off < size;) {
		size_t n = size - off < XFER_PIECE ? (size_t)(size - off) : XFER_PIECE;
		r = pread_all(fd, buf, n, off);
		if (r < 0) {
			set_msg(msg, msglen, "upload: reading the local file at %llu: %s",
				(unsigned long long)off, strerror(-r));
			rc = GMT_E_STORAGE;
			goto done;
		}
		r = write_all(out, buf, n);
		if (r < 0) {
			set_msg(msg, msglen, "upload: write %s in %s: %s", tmp, folder, strerror(-r));
			rc = GMT_E_UPLOAD;
			goto done;
		}
		off += n;
	}
	if (fsync(out) < 0 || close(out) < 0) {
		out = -1;
		set_msg(msg, msglen, "upload: fsync %s in %s: %s", tmp, folder, strerror(errno));
		rc = GMT_E_UPLOAD;
		goto done;
	}
	out = -1;
	if (renameat(dirfd, tmp, dirfd, base) < 0) {
		set_msg(msg, msglen, "upload: rename to %s in %s: %s", base, folder, strerror(errno));
		rc = GMT_E_UPLOAD;
		goto done;
	}
	created = false;
	if (fsync(dirfd) < 0) {
		set_msg(msg, msglen, "upload: fsync folder %s: %s", folder, strerror(errno));
		rc = GMT_E_UPLOAD;
		goto done;
	}
	rc = 0;
done:
	if (out >= 0)
		close(out);
	if (created)
		(void)unlinkat(dirfd, tmp, 0);
	if (dirfd >= 0)
		close(dirfd);
	free(buf);
	free(tmp);
	free(path);
	return rc;
}

static int file_download(const char *url, int fd, uint64_t max_bytes, crypto_sm3_ctx *sm3,
			 uint64_t *ret_size, char *msg, size_t msglen)
{
	char *path = NULL, *buf = NULL;
	int in = -1, rc;
	int r = file_url_path(url, &path);
	if (r == -ENOMEM)
		return GMT_E_INTERNAL;
	if (r < 0) {
		set_msg(msg, msglen, "download: a file:// URL needs an absolute path without '.' "
				     "or '..' segments, query or fragment");
		return GMT_E_DOWNLOAD;
	}
	in = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	if (in < 0 || fstat(in, &st) < 0) {
		set_msg(msg, msglen, "download: open %s: %s", path, strerror(errno));
		rc = GMT_E_DOWNLOAD;
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		set_msg(msg, msglen, "download: %s is not a regular file", path);
		rc = GMT_E_DOWNLOAD;
		goto done;
	}
	if ((uint64_t)st.st_size > max_bytes) {
		set_msg(msg, msglen, "download: %s is larger than %llu bytes", path,
			(unsigned long long)max_bytes);
		rc = GMT_E_DOWNLOAD;
		goto done;
	}
	buf = malloc(XFER_PIECE);
	if (!buf) {
		rc = GMT_E_INTERNAL;
		goto done;
	}
	uint64_t total = 0;
	for (;;) {
		ssize_t n = read(in, buf, XFER_PIECE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			set_msg(msg, msglen, "download: read %s: %s", path, strerror(errno));
			rc = GMT_E_DOWNLOAD;
			goto done;
		}
		if (n == 0)
			break;
		if ((uint64_t)n > max_bytes - total) {
			set_msg(msg, msglen, "download: %s is larger than %llu bytes", path,
				(unsigned long long)max_bytes);
			rc = GMT_E_DOWNLOAD;
			goto done;
		}
		r = write_all(fd, buf, (size_t)n);
		if (r < 0) {
			set_msg(msg, msglen, "download: writing the local file: %s", strerror(-r));
			rc = GMT_E_STORAGE;
			goto done;
		}
		if (crypto_sm3_update(sm3, buf, (size_t)n) < 0) {
			rc = GMT_E_INTERNAL;
			goto done;
		}
		total += (uint64_t)n;
	}
	*ret_size = total;
	rc = 0;
done:
	if (in >= 0)
		close(in);
	free(buf);
	free(path);
	return rc;
}

/* ---- HTTP(S) with libcurl ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static bool curl_ready;

static void curl_init_once(void)
{
	curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

/* Header names are RFC 9110 tokens; values have no control characters. */
static bool header_name_ok(const char *s)
{
	size_t len = strlen(s);
	return len > 0 && len <= 256 && chsm_str_charset(s, len, "!#$%&'*+-.^_`|~");
}

static bool header_value_ok(const char *s)
{
	for (; *s; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return false;
	return true;
}

/* Wipes every line of list (they may hold credentials), then frees it. */
static void free_headers(struct curl_slist *list)
{
	for (struct curl_slist *s = list; s; s = s->next)
		crypto_wipe(s->data, strlen(s->data));
	curl_slist_free_all(list);
}

static int append_line(struct curl_slist **list, const char *line)
{
	struct curl_slist *n = curl_slist_append(*list, line);
	if (!n)
		return -ENOMEM;
	*list = n;
	return 0;
}

/* The request headers: the configured ones (unless configured is false),
 * then "Expect:" (no 100-continue wait) and, for an upload, a Content-Type
 * unless one is configured. -EINVAL names the bad header in msg. */
static int build_headers(const json_t *headers, bool configured, enum xfer_dir dir,
			 struct curl_slist **ret_list, char *msg, size_t msglen)
{
	struct curl_slist *list = NULL;
	bool have_type = false;
	int r = 0;
	if (headers && configured) {
		if (!json_is_object(headers) || json_object_size(headers) > XFER_HEADERS_MAX) {
			set_msg(msg, msglen, "the configured headers are not an object of strings");
			return -EINVAL;
		}
		const char *name;
		json_t *value;
		json_object_foreach((json_t *)headers, name, value) {
			const char *v = json_string_value(value);
			if (!header_name_ok(name) || !v || !header_value_ok(v) ||
			    strcasecmp(name, "Content-Length") == 0 ||
			    strcasecmp(name, "Transfer-Encoding") == 0 ||
			    strcasecmp(name, "Host") == 0) {
				set_msg(msg, msglen, "configured header %.64s is not allowed",
					header_name_ok(name) ? name : "(bad name)");
				r = -EINVAL;
				goto fail;
			}
			if (strcasecmp(name, "Content-Type") == 0)
				have_type = true;
			/* "Name;" is libcurl's way to send a header with no value. */
			size_t len = strlen(name) + strlen(v) + 3;
			char *line = malloc(len);
			if (!line) {
				r = -ENOMEM;
				goto fail;
			}
			if (*v)
				snprintf(line, len, "%s: %s", name, v);
			else
				snprintf(line, len, "%s;", name);
			r = append_line(&list, line);
			crypto_free_secret(line, len);
			if (r < 0)
				goto fail;
		}
	}
	r = append_line(&list, "Expect:");
	if (r == 0 && dir == XFER_UP && !have_type)
		r = append_line(&list, "Content-Type: application/octet-stream");
	if (r < 0)
		goto fail;
	*ret_list = list;
	return 0;
fail:
	free_headers(list);
	return r;
}

struct upload_src {
	int fd;
	uint64_t size;
	uint64_t off;
	int err; /* errno of a failed read of fd */
};

static size_t upload_read(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct upload_src *src = userdata;
	size_t want = size * nitems;
	if (want > XFER_PIECE)
		want = XFER_PIECE;
	if ((uint64_t)want > src->size - src->off)
		want = (size_t)(src->size - src->off);
	if (want == 0)
		return 0;
	int r = pread_all(src->fd, buf, want, src->off);
	if (r < 0) {
		src->err = -r;
		return CURL_READFUNC_ABORT;
	}
	src->off += want;
	return want;
}

static int upload_seek(void *userdata, curl_off_t offset, int origin)
{
	struct upload_src *src = userdata;
	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > src->size)
		return CURL_SEEKFUNC_FAIL;
	src->off = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

struct download_sink {
	CURL *curl;
	int fd;
	uint64_t max;
	uint64_t total;
	crypto_sm3_ctx *sm3;
	int err;        /* errno of a failed write to fd */
	bool too_big;
	bool bad_status;
	bool sm3_failed;
};

static bool status_2xx(long status)
{
	return status >= 200 && status < 300;
}

static bool status_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 ||
	       status == 308;
}

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;
}

static size_t download_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct download_sink *s = userdata;
	size_t len = size * nmemb;
	long status = 0;
	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status_redirect(status))
		return len; /* the body of a redirect: not the file */
	if (!status_2xx(status)) {
		s->bad_status = true;
		return 0;
	}
	if ((uint64_t)len > s->max - s->total) {
		s->too_big = true;
		return 0;
	}
	int r = write_all(s->fd, ptr, len);
	if (r < 0) {
		s->err = -r;
		return 0;
	}
	if (crypto_sm3_update(s->sm3, ptr, len) < 0) {
		s->sm3_failed = true;
		return 0;
	}
	s->total += (uint64_t)len;
	return len;
}

/* True when a and b have the same scheme, host and port. */
static bool same_origin(const char *a, const char *b)
{
	bool same = false;
	CURLU *ua = curl_url(), *ub = curl_url();
	char *pa[3] = {NULL, NULL, NULL}, *pb[3] = {NULL, NULL, NULL};
	static const CURLUPart parts[3] = {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT};
	if (!ua || !ub || curl_url_set(ua, CURLUPART_URL, a, 0) != CURLUE_OK ||
	    curl_url_set(ub, CURLUPART_URL, b, 0) != CURLUE_OK)
		goto done;
	same = true;
	for (int i = 0; i < 3; i++) {
		if (curl_url_get(ua, parts[i], &pa[i], CURLU_DEFAULT_PORT) != CURLUE_OK ||
		    curl_url_get(ub, parts[i], &pb[i], CURLU_DEFAULT_PORT) != CURLUE_OK ||
		    strcasecmp(pa[i], pb[i]) != 0)
			same = false;
	}
done:
	for (int i = 0; i < 3; i++) {
		curl_free(pa[i]);
		curl_free(pb[i]);
	}
	curl_url_cleanup(ua);
	curl_url_cleanup(ub);
	return same;
}

/* curl's detailed message where it holds no URL or header (host names,
 * addresses, TLS reasons); otherwise its fixed text for the code. */
static const char *curl_reason(CURLcode cc, const char *errbuf)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		if (errbuf[0])
			return errbuf;
		break;
	default:
		break;
	}
	return curl_easy_strerror(cc);
}

static void common_options(CURL *c, const struct xfer_options *opt, char *errbuf)
{
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)XFER_CONNECT_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long)XFER_LOW_SPEED_BYTES);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)XFER_LOW_SPEED_SECONDS);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	if (opt && opt->cafile)
		curl_easy_setopt(c, CURLOPT_CAINFO, opt->cafile);
}

static int http_upload(const char *url, const char *shown, int fd, uint64_t size,
		       const struct xfer_options *opt, char *msg, size_t msglen)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL;
	struct upload_src src = {.fd = fd, .size = size};
	int rc;
	CURL *c = curl_easy_init();
	if (!c)
		return GMT_E_INTERNAL;
	int r = build_headers(opt ? opt->headers : NULL, true, XFER_UP, &hdrs, msg, msglen);
	if (r < 0) {
		rc = GMT_E_INTERNAL;
		goto done;
	}
	common_options(c, opt, errbuf);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, (long)XFER_PIECE);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, upload_read);
	curl_easy_setopt(c, CURLOPT_READDATA, &src);
	curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, upload_seek);
	curl_easy_setopt(c, CURLOPT_SEEKDATA, &src);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
	CURLcode cc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (src.err) {
		set_msg(msg, msglen, "upload to %s: reading the local file: %s", shown,
			strerror(src.err));
		rc = GMT_E_STORAGE;
	} else if (cc == CURLE_OUT_OF_MEMORY) {
		rc = GMT_E_INTERNAL;
	} else if (cc != CURLE_OK) {
		set_msg(msg, msglen, "upload to %s: %s", shown, curl_reason(cc, errbuf));
		rc = GMT_E_UPLOAD;
	} else if (!status_2xx(status)) {
		set_msg(msg, msglen, "upload to %s: HTTP status %ld", shown, status);
		rc = GMT_E_UPLOAD;
	} else {
		rc = 0;
	}
done:
	curl_easy_cleanup(c);
	free_headers(hdrs);
	return rc;
}

/* One GET of url into sink. Returns 0 with *ret_status, or a code. */
static int http_get_once(CURL *c, const char *url, const char *shown, bool send_headers,
			 const struct xfer_options *opt, struct download_sink *sink,
			 long *ret_status, char **ret_location, char *msg, size_t msglen)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL;
	int rc;
	curl_easy_reset(c);
	int r = build_headers(opt ? opt->headers : NULL, send_headers, XFER_DOWN, &hdrs, msg,
			      msglen);
	if (r < 0)
		return GMT_E_INTERNAL;
	common_options(c, opt, errbuf);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, download_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
	if (sink->max - sink->total < (uint64_t)INT64_MAX)
		curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE,
				 (curl_off_t)(sink->max - sink->total));
	CURLcode cc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL); /* errbuf ends here */
	if (sink->err) {
		set_msg(msg, msglen, "download from %s: writing the local file: %s", shown,
			strerror(sink->err));
		rc = GMT_E_STORAGE;
	} else if (sink->too_big || cc == CURLE_FILESIZE_EXCEEDED) {
		set_msg(msg, msglen, "download from %s: larger than %llu bytes", shown,
			(unsigned long long)sink->max);
		rc = GMT_E_DOWNLOAD;
	} else if (sink->sm3_failed || cc == CURLE_OUT_OF_MEMORY) {
		rc = GMT_E_INTERNAL;
	} else if (sink->bad_status || cc == CURLE_HTTP_RETURNED_ERROR ||
		   (cc == CURLE_OK && !status_2xx(status) && !status_redirect(status))) {
		set_msg(msg, msglen, "download from %s: HTTP status %ld", shown, status);
		rc = GMT_E_DOWNLOAD;
	} else if (cc != CURLE_OK) {
		set_msg(msg, msglen, "download from %s: %s", shown, curl_reason(cc, errbuf));
		rc = GMT_E_DOWNLOAD;
	} else {
		rc = 0;
		*ret_status = status;
		*ret_location = NULL;
		char *loc = NULL;
		if (status_redirect(status) &&
		    curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc) {
			*ret_location = strdup(loc);
			if (!*ret_location)
				rc = GMT_E_INTERNAL;
		}
	}
	free_headers(hdrs);
	return rc;
}

/* GET following up to XFER_MAX_REDIRECT redirects to http(s) URLs; the
 * configured headers go only to the origin of the URL given. */
static int http_download(const char *url, const char *shown, int fd, uint64_t max_bytes,
			 crypto_sm3_ctx *sm3, const struct xfer_options *opt,
			 uint64_t *ret_size, char *msg, size_t msglen)
{
	struct download_sink sink = {.fd = fd, .max = max_bytes, .sm3 = sm3};
	char *cur = strdup(url);
	int rc = GMT_E_INTERNAL;
	CURL *c = curl_easy_init();
	if (!c || !cur)
		goto done;
	sink.curl = c;
	bool send_headers = true;
	for (int hop = 0;; hop++) {
		long status = 0;
		char *loc = NULL;
		rc = http_get_once(c, cur, shown, send_headers, opt, &sink, &status, &loc, msg,
				   msglen);
		if (rc != 0)
			goto done;
		if (status_2xx(status)) {
			free(loc);
			*ret_size = sink.total;
			goto done;
		}
		/* A redirect. */
		if (!loc || hop >= XFER_MAX_REDIRECT ||
		    !(has_prefix_ci(loc, "http://") || has_prefix_ci(loc, "https://"))) {
			set_msg(msg, msglen, "download from %s: HTTP status %ld %s", shown, status,
				!loc ? "without a Location"
				: hop >= XFER_MAX_REDIRECT ? "after too many redirects"
							   : "to a scheme other than http(s)");
			free(loc);
			rc = GMT_E_DOWNLOAD;
			goto done;
		}
		if (send_headers && !same_origin(url, loc))
			send_headers = false;
		free(cur);
		cur = loc;
	}
done:
	curl_easy_cleanup(c);
	free(cur);
	return rc;
}

/* ---- entry points ---- */

static int prepare(const char *url, int fd, enum xfer_dir dir, char *msg, size_t msglen,
		   char *shown, size_t shown_cap)
{
	set_msg(msg, msglen, "%s", "");
	if (!url || fd < 0)
		return GMT_E_INTERNAL;
	xfer_redact_url(url, shown, shown_cap);
	const char *what = dir == XFER_UP ? "upload" : "download";
	if (strlen(url) >= XFER_URL_MAX) {
		set_msg(msg, msglen, "%s: URL longer than %d bytes", what, XFER_URL_MAX - 1);
		return fail_code(dir);
	}
	if (!scheme_supported(url)) {
		set_msg(msg, msglen, "%s to %s: unsupported URL scheme", what, shown);
		return fail_code(dir);
	}
	if (!has_prefix_ci(url, "file://")) {
		pthread_once(&curl_once, curl_init_once);
		if (!curl_ready) {
			set_msg(msg, msglen, "%s: libcurl did not initialise", what);
			return GMT_E_INTERNAL;
		}
	}
	return 0;
}

int xfer_upload(const char *url, int fd, uint64_t size, const struct xfer_options *opt, char *msg,
		size_t msglen)
{
	char shown[XFER_URL_MAX];
	int rc = prepare(url, fd, XFER_UP, msg, msglen, shown, sizeof(shown));
	if (rc != 0)
		return rc;
	if (size > (uint64_t)INT64_MAX)
		return GMT_E_INTERNAL;
	if (has_prefix_ci(url, "file://"))
		return file_upload(url, fd, size, msg, msglen);
	return http_upload(url, shown, fd, size, opt, msg, msglen);
}

int xfer_download(const char *url, int fd, uint64_t max_bytes, const struct xfer_options *opt,
		  uint64_t *ret_size, char ret_sm3[CRYPTO_SM3_HEX_LEN + 1], char *msg,
		  size_t msglen)
{
	char shown[XFER_URL_MAX];
	if (!ret_size || !ret_sm3)
		return GMT_E_INTERNAL;
	int rc = prepare(url, fd, XFER_DOWN, msg, msglen, shown, sizeof(shown));
	if (rc != 0)
		return rc;
	crypto_sm3_ctx *sm3 = NULL;
	if (crypto_sm3_new(&sm3) < 0)
		return GMT_E_INTERNAL;
	uint64_t size = 0;
	if (has_prefix_ci(url, "file://"))
		rc = file_download(url, fd, max_bytes, sm3, &size, msg, msglen);
	else
		rc = http_download(url, shown, fd, max_bytes, sm3, opt, &size, msg, msglen);
	uint8_t digest[CRYPTO_SM3_LEN];
	if (rc == 0 && crypto_sm3_final(sm3, digest) < 0)
		rc = GMT_E_INTERNAL;
	crypto_sm3_free(sm3);
	if (rc != 0)
		return rc;
	chsm_hex_encode(digest, sizeof(digest), ret_sm3);
	*ret_size = size;
	return 0;
}
