/*
 * xfer.h: moving images and packages to and from where the platform keeps
 * them (PROFILE.md 7.2.6, §10): HTTP(S) PUT to an upload address (for
 * example a pre-signed object-store URL), HTTP(S) GET of a download URL,
 * and file:// for both. Built on libcurl; streams through fixed-size
 * buffers, so memory does not grow with the file.
 *
 * Upload addresses are prefixes: the object for name NAME is put at
 *   scheme://host[:port]/path[/]NAME[?query]
 * i.e. NAME is appended to the path (with one '/' between) and a query
 * string, such as a pre-signature, is kept after it (xfer_object_url).
 *
 * Every function returns 0 or a code of PROFILE.md Appendix A: 4004 for a
 * failed upload (bad or unsupported URL, connection, TLS, HTTP status other
 * than 2xx, file:// destination error, ENOSPC there included), 4005 for a
 * failed download (the same, or more than max_bytes), 5000 for misuse
 * (NULL url, fd < 0, invalid configured headers) or memory, 5001 for an
 * error reading or writing fd, the CHSM's own file (ENOSPC included).
 * msg (may be NULL) receives a short reason for the operator, "" on
 * success: the scheme, host, path and HTTP status or curl error, never the
 * URL's userinfo, query string or a header value (they may hold
 * credentials).
 *
 * file:// URLs name an absolute path (authority empty or "localhost",
 * percent-decoded, no control character, "." or ".." segment, query or
 * fragment; else 4004/4005) and are handled without libcurl. HTTP(S)
 * verifies the peer (system CA store, plus cafile if given), sends the
 * configured headers plus an empty "Expect:", and aborts per the timeouts
 * below; docs/xfer.md has details.
 *
 * Thread safety: functions may be called from several threads at once
 * (curl_global_init is done once, thread-safely, by the first call).
 */
#ifndef CHSM_XFER_H
#define CHSM_XFER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

/* Seconds to connect; a transfer slower than XFER_LOW_SPEED_BYTES per
 * second for XFER_LOW_SPEED_SECONDS is aborted. */
#define XFER_CONNECT_TIMEOUT_S 10
#define XFER_LOW_SPEED_BYTES   1024
#define XFER_LOW_SPEED_SECONDS 30
#define XFER_URL_MAX           2048

struct xfer_options {
	const json_t *headers;   /* object of name -> value, or NULL */
	const char *cafile;      /* extra CA bundle for https, or NULL */
};

/* The object URL for name (1..128 characters of [A-Za-z0-9._-], not "."
 * or "..") under prefix (an https://, http:// or file:// URL without a
 * fragment), into out (cap bytes, at most XFER_URL_MAX used).
 * -EINVAL / -ENAMETOOLONG (errno style); out is written only on success. */
int xfer_object_url(const char *prefix, const char *name, char *out, size_t cap);

/* A URL safe to log: scheme://host[:port]/path without userinfo, query or
 * fragment, control characters replaced by '?', truncated to cap - 1. */
void xfer_redact_url(const char *url, char *out, size_t cap);

/* Uploads the size bytes of fd, read from offset 0 with pread, to url:
 * HTTP(S) PUT with opt->headers, Content-Length size, and
 * Content-Type application/octet-stream (unless configured), no redirect
 * followed; or for file:///path, writes path.tmp-<random>, fsyncs it,
 * renames it over path and fsyncs the folder (the folder must exist). */
int xfer_upload(const char *url, int fd, uint64_t size, const struct xfer_options *opt, char *msg,
		size_t msglen);

/* Downloads url (HTTP(S) GET following up to 3 redirects to http(s) URLs,
 * the configured headers sent only to url's own scheme, host and port; or
 * file:///path, a regular file) into fd (written sequentially from its
 * current offset), at most max_bytes, and returns the number of bytes and
 * their SM3 (64 lowercase hex digits). On failure fd may hold part of the
 * data; ret_* are written only on success. */
int xfer_download(const char *url, int fd, uint64_t max_bytes, const struct xfer_options *opt,
		  uint64_t *ret_size, char ret_sm3[CRYPTO_SM3_HEX_LEN + 1], char *msg,
		  size_t msglen);

#endif
