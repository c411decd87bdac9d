/*
 * transport.c: the client's only contact with libcurl. One CURL handle per
 * client, reset before every exchange so that no option of one request
 * leaks into the next, while its connection (keep-alive) and TLS session
 * survive.
 *
 * Guarantees: only https and http are spoken, redirects are never followed,
 * the request-target is sent exactly as given (no dot-segment squashing, so
 * that it matches what was signed), no "Expect: 100-continue" round trip,
 * TLS 1.2 or newer. With a CA file, the peer and its host name are verified
 * against that file only; without one, TLS is not verified (the caller
 * authenticates the device by its response signatures). A response body
 * larger than CHSM_CLIENT_MAX_RESPONSE_BYTES is refused.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "client/client_internal.h"
#include "proto/auth.h"

struct sink {
	char *data;
	size_t len, cap;
	bool too_large;
};

static size_t sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct sink *s = userdata;
	size_t n = size * nmemb;
	if (n > CHSM_CLIENT_MAX_RESPONSE_BYTES - s->len) {
		s->too_large = true;
		return 0;
	}
	if (s->len + n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + n + 1)
			cap *= 2;
		char *p = realloc(s->data, cap);
		if (!p)
			return 0;
		s->data = p;
		s->cap = cap;
	}
	memcpy(s->data + s->len, ptr, n);
	s->len += n;
	s->data[s->len] = '\0';
	return n;
}

int transport_init(struct chsm_client *cl)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -ENOMEM;
	CURL *c = curl_easy_init();
	if (!c) {
		curl_global_cleanup();
		return -ENOMEM;
	}
	cl->curl = c;
	return 0;
}

void transport_free(struct chsm_client *cl)
{
	if (!cl || !cl->curl)
		return;
	curl_easy_cleanup(cl->curl);
	cl->curl = NULL;
	curl_global_cleanup();
}

void client_reply_free(struct client_reply *r)
{
	if (!r)
		return;
	free(r->body);
	free(r->device_key_id);
	free(r->device_signature);
	memset(r, 0, sizeof(*r));
}

/* The value of a response header that occurs exactly once, copied; NULL
 * when it is absent or repeated (a repeated signature is not trusted). */
static char *single_header(CURL *c, const char *name)
{
	struct curl_header *h = NULL;
	if (curl_easy_header(c, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h)
		return NULL;
	if (h->amount != 1)
		return NULL;
	return strdup(h->value);
}

/* Sets every option of one exchange; returns the first failure. */
static CURLcode setup(struct chsm_client *cl, CURL *c, const char *method, const char *url,
		      struct curl_slist *hdrs, const char *body, size_t body_len,
		      struct sink *sink, char *errbuf)
{
	CURLcode rc = CURLE_OK;
#define SET(opt, val)                                       \
	do {                                                \
		if (rc == CURLE_OK)                         \
			rc = curl_easy_setopt(c, opt, val); \
	} while (0)
	SET(CURLOPT_URL, url);
	SET(CURLOPT_PROTOCOLS_STR, "https,http");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_PATH_AS_IS, 1L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	SET(CURLOPT_CONNECTTIMEOUT_MS, cl->connect_timeout_ms);
	SET(CURLOPT_TIMEOUT_MS, cl->timeout_ms);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_WRITEFUNCTION, sink_write);
	SET(CURLOPT_WRITEDATA, sink);
	SET(CURLOPT_HTTPHEADER, hdrs);
	if (cl->cacert_path) {
		SET(CURLOPT_CAINFO, cl->cacert_path);
		SET(CURLOPT_CAPATH, (char *)NULL);
		SET(CURLOPT_SSL_VERIFYPEER, 1L);
		SET(CURLOPT_SSL_VERIFYHOST, 2L);
	} else {
		SET(CURLOPT_SSL_VERIFYPEER, 0L);
		SET(CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (strcmp(method, "GET") == 0) {
		SET(CURLOPT_HTTPGET, 1L);
	} else {
		/* POSTFIELDS with an explicit size also gives a bodiless PUT or
		 * DELETE a "Content-Length: 0" instead of a chunked upload. */
		SET(CURLOPT_POSTFIELDS, body ? body : "");
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
		SET(CURLOPT_CUSTOMREQUEST, method);
	}
#undef SET
	return rc;
}

int transport_exchange(struct chsm_client *cl, const char *method, const char *url,
		       const char *const *headers, const char *body, size_t body_len,
		       struct client_reply *ret)
{
	CURL *c = cl->curl;
	struct curl_slist *hdrs = NULL;
	struct sink sink = {0};
	char errbuf[CURL_ERROR_SIZE] = "";
	struct client_reply reply = {0};
	int r = 0;

	for (size_t i = 0; headers[i]; i++) {
		struct curl_slist *n = curl_slist_append(hdrs, headers[i]);
		if (!n) {
			r = -ENOMEM;
			goto out;
		}
		hdrs = n;
	}
	curl_easy_reset(c);
	CURLcode rc = setup(cl, c, method, url, hdrs, body, body_len, &sink, errbuf);
	if (rc == CURLE_OK)
		rc = curl_easy_perform(c);
	if (sink.too_large) {
		client_set_error(cl, "response body larger than %d bytes",
				 CHSM_CLIENT_MAX_RESPONSE_BYTES);
		r = CHSM_CLIENT_E_BAD_RESPONSE;
		goto out;
	}
	if (rc != CURLE_OK) {
		client_set_error(cl, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		r = rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : CHSM_CLIENT_E_TRANSPORT;
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
	reply.body = sink.data ? sink.data : strdup("");
	sink.data = NULL;
	reply.body_len = sink.len;
	if (!reply.body) {
		r = -ENOMEM;
		goto out;
	}
	reply.device_key_id = single_header(c, GMT_HDR_DEVICE_KEY_ID);
	reply.device_signature = single_header(c, GMT_HDR_DEVICE_SIGNATURE);
	*ret = reply;
	memset(&reply, 0, sizeof(reply));
out:
	/* The handle keeps pointers to hdrs and body until the next reset. */
	curl_easy_reset(c);
	curl_slist_free_all(hdrs);
	free(sink.data);
	client_reply_free(&reply);
	return r;
}
