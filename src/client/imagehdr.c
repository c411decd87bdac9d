/*
 * imagehdr.c: reading the plaintext header of an image (docs/image-format.md)
 * from a URL, without any secret, for the platform side (chsm_client_drift
 * when the source CHSM is lost).
 *
 * Guarantees: at most IMAGEHDR_PROLOGUE_LEN + IMAGEHDR_HEADER_MAX bytes are
 * ever received, whatever the server sends (a Range request asks for no
 * more; a server that ignores Range is cut off once the header is in); the
 * header length is checked against the format's bound before anything is
 * kept; the header must be one JSON object without duplicate keys whose
 * formatVersion and type agree with the prologue. Nothing here is
 * authenticated: the image's signature covers the whole file, which only
 * the importing CHSM checks (with the SM3 the caller gives it).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "client/client_internal.h"
#include "common/limits.h"

/* The layout of docs/image-format.md (src/image/image.h is its code). */
#define IMAGEHDR_MAGIC        "OCHSMIMG"
#define IMAGEHDR_MAGIC_LEN    8
#define IMAGEHDR_VERSION      1
#define IMAGEHDR_PROLOGUE_LEN 16
#define IMAGEHDR_HEADER_MIN   2
#define IMAGEHDR_HEADER_MAX   (256 * 1024)

static const char *const type_names[] = {NULL, "vsm-image", "chsm-image", "backup", "package"};

struct hdr_sink {
	uint8_t prologue[IMAGEHDR_PROLOGUE_LEN];
	size_t got;          /* bytes received so far, prologue included */
	uint32_t header_len; /* known once the prologue is in */
	char *header;        /* header_len + 1 bytes */
	bool bad_prologue;
	bool no_memory;
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool sink_complete(const struct hdr_sink *s)
{
	return s->header && s->got == IMAGEHDR_PROLOGUE_LEN + (size_t)s->header_len;
}

/* Takes the prologue, then the header; stops the transfer (returns less
 * than offered) once the header is complete or the prologue is bad. */
static size_t hdr_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct hdr_sink *s = userdata;
	size_t n = size * nmemb, used = 0;
	while (used < n && !sink_complete(s)) {
		if (s->got < IMAGEHDR_PROLOGUE_LEN) {
			size_t take = IMAGEHDR_PROLOGUE_LEN - s->got;
			if (take > n - used)
				take = n - used;
			memcpy(s->prologue + s->got, ptr + used, take);
			s->got += take;
			used += take;
			if (s->got < IMAGEHDR_PROLOGUE_LEN)
				break;
			s->header_len = be32(s->prologue + 12);
			if (memcmp(s->prologue, IMAGEHDR_MAGIC, IMAGEHDR_MAGIC_LEN) != 0 ||
			    s->header_len < IMAGEHDR_HEADER_MIN ||
			    s->header_len > IMAGEHDR_HEADER_MAX) {
				s->bad_prologue = true;
				return 0;
			}
			s->header = malloc((size_t)s->header_len + 1);
			if (!s->header) {
				s->no_memory = true;
				return 0;
			}
			continue;
		}
		size_t have = s->got - IMAGEHDR_PROLOGUE_LEN, take = s->header_len - have;
		if (take > n - used)
			take = n - used;
		memcpy(s->header + have, ptr + used, take);
		s->got += take;
		used += take;
	}
	if (sink_complete(s)) {
		s->header[s->header_len] = '\0';
		return used == n ? n : 0; /* the rest is not wanted */
	}
	return used;
}

static void set_err(char *err, size_t errlen, const char *url, const char *what)
{
	if (err && errlen)
		snprintf(err, errlen, "%.256s: %s", url, what);
}

/* Downloads the prologue and header of url into *s. */
static int fetch(const char *url, const char *cacert_path, long timeout_ms, struct hdr_sink *s,
		 char *err, size_t errlen)
{
	char range[64], errbuf[CURL_ERROR_SIZE] = "";
	CURLcode rc = CURLE_OK;
	long status = 0;
	int r = 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -ENOMEM;
	CURL *c = curl_easy_init();
	if (!c) {
		curl_global_cleanup();
		return -ENOMEM;
	}
	snprintf(range, sizeof(range), "0-%d", IMAGEHDR_PROLOGUE_LEN + IMAGEHDR_HEADER_MAX - 1);
#define SET(opt, val)                                       \
	do {                                                \
		if (rc == CURLE_OK)                         \
			rc = curl_easy_setopt(c, opt, val); \
	} while (0)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "https,http,file");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_RANGE, range);
	SET(CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < CHSM_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS
				       ? timeout_ms : CHSM_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS);
	SET(CURLOPT_TIMEOUT_MS, timeout_ms);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_WRITEFUNCTION, hdr_write);
	SET(CURLOPT_WRITEDATA, s);
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (cacert_path)
		SET(CURLOPT_CAINFO, cacert_path);
#undef SET
	if (rc == CURLE_OK)
		rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (s->no_memory) {
		r = -ENOMEM;
	} else if (s->bad_prologue) {
		set_err(err, errlen, url, "not an image (magic or header length)");
		r = CHSM_CLIENT_E_BAD_IMAGE;
	} else if (strncmp(url, "http", 4) == 0 && status != 200 && status != 206) {
		if (err && errlen)
			snprintf(err, errlen, "%.256s: HTTP status %ld", url, status);
		r = CHSM_CLIENT_E_TRANSPORT;
	} else if (sink_complete(s)) {
		r = 0; /* a cut-off transfer (CURLE_WRITE_ERROR) is expected */
	} else if (rc != CURLE_OK) {
		if (err && errlen)
			snprintf(err, errlen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		r = CHSM_CLIENT_E_TRANSPORT;
	} else {
		set_err(err, errlen, url, "ends before the end of its header");
		r = CHSM_CLIENT_E_BAD_IMAGE;
	}
	curl_easy_cleanup(c);
	curl_global_cleanup();
	return r;
}

int chsm_client_image_header(const char *url, const char *cacert_path, long timeout_ms,
			     char **ret_header_json, int *ret_type, char *err, size_t errlen)
{
	struct hdr_sink s = {0};
	json_t *h = NULL;
	char *out = NULL;
	int r;
	if (err && errlen)
		err[0] = '\0';
	if (!url || !ret_header_json || !ret_type || timeout_ms < 0 ||
	    strlen(url) > CHSM_JSON_MAX_URL ||
	    (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0 &&
	     strncmp(url, "file://", 7) != 0))
		return -EINVAL;
	r = fetch(url, cacert_path, timeout_ms ? timeout_ms : CHSM_CLIENT_DEFAULT_TIMEOUT_MS, &s,
		  err, errlen);
	if (r < 0)
		goto out;
	r = CHSM_CLIENT_E_BAD_IMAGE;
	int type = s.prologue[8], version = s.prologue[9];
	unsigned flags = (unsigned)s.prologue[10] << 8 | s.prologue[11];
	if (version != IMAGEHDR_VERSION || flags != 0 || type < 1 || type > 4) {
		set_err(err, errlen, url, "unsupported image version, flags or type");
		goto out;
	}
	h = json_loadb(s.header, s.header_len, JSON_REJECT_DUPLICATES, NULL);
	json_t *fv = json_object_get(h, "formatVersion");
	const char *tname = json_string_value(json_object_get(h, "type"));
	if (!json_is_object(h) || !json_is_integer(fv) ||
	    json_integer_value(fv) != IMAGEHDR_VERSION || !tname ||
	    strcmp(tname, type_names[type]) != 0) {
		set_err(err, errlen, url, "the image header is malformed");
		goto out;
	}
	out = json_dumps(h, JSON_COMPACT);
	if (!out) {
		r = -ENOMEM;
		goto out;
	}
	*ret_header_json = out;
	*ret_type = type;
	r = 0;
out:
	json_decref(h);
	free(s.header);
	return r;
}
