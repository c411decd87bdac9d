/*
 * client_internal.h: the state of a chsm_client shared by the files of the
 * client library (client.c: requests and device-key checks; transport.c:
 * the one libcurl handle; task.c: waiting for tasks; keys.c: key files).
 * Private: nothing here is installed.
 */
#ifndef CHSM_CLIENT_INTERNAL_H
#define CHSM_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "common/limits.h"
#include "crypto/crypto.h"
#include "openchsm/chsm_client.h"

/* Defaults of struct chsm_client_options (limits are in common/limits.h). */
#define CHSM_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define CHSM_CLIENT_DEFAULT_TIMEOUT_MS         60000L

struct chsm_client {
	char *base_url;                  /* scheme://authority, no trailing '/' */
	char *cacert_path;               /* NULL: TLS not verified */
	long connect_timeout_ms;
	long timeout_ms;
	crypto_sm2_key *platform_key;    /* NULL: requests go unsigned */
	bool pinned;
	char pinned_fp[CRYPTO_SM3_HEX_LEN + 1];
	crypto_sm2_key *device_key;      /* NULL until 7.4.1 was checked */
	char device_fp[CRYPTO_SM3_HEX_LEN + 1];
	void *curl;                      /* CURL *, reused for keep-alive */
	char last_error[256];
};

/* One HTTP exchange as received, before any check. */
struct client_reply {
	long status;
	char *body;                      /* NUL-terminated, body_len bytes */
	size_t body_len;
	char *device_key_id;             /* NULL when the header is absent */
	char *device_signature;          /* NULL when absent or repeated */
};

/* Writes a printf-style message into cl->last_error. */
void client_set_error(struct chsm_client *cl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Creates the libcurl handle of cl (cl->curl). Returns 0 or -ENOMEM. */
int transport_init(struct chsm_client *cl);
/* Releases cl->curl. Accepts a client without one. */
void transport_free(struct chsm_client *cl);
/* Performs one exchange: method on url (the full URL, target included),
 * with the given extra header lines (NULL-terminated array) and body
 * (NULL: none). Returns 0 and fills *ret, CHSM_CLIENT_E_TRANSPORT (with
 * cl->last_error set), CHSM_CLIENT_E_BAD_RESPONSE when the body is too
 * large, or -ENOMEM. */
int transport_exchange(struct chsm_client *cl, const char *method, const char *url,
		       const char *const *headers, const char *body, size_t body_len,
		       struct client_reply *ret);
/* Frees the members of a reply. Accepts NULL. */
void client_reply_free(struct client_reply *r);

#endif
