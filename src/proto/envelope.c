/*
 * envelope.c: the response body of PROFILE.md §6 and request/task IDs.
 *
 * Guarantees: gmt_envelope always writes the members in the order code,
 * message, requestId, data, as compact JSON; it never puts data into an
 * error envelope. gmt_envelope_parse accepts only a well-typed envelope and
 * rejects duplicate keys. IDs carry 96 random bits, drawn from a per-thread
 * pool that one crypto_random call fills for 64 IDs.
 */
#include "proto/envelope.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "proto/codes.h"
#include "proto/jsonw.h"

#define ID_RANDOM_BYTES 12
/* IDs drawn from one crypto_random call: each call costs the DRBG's locks
 * and a getpid() (OpenSSL's fork check), about 4 us on a busy server, once
 * per request before this pool. */
#define ID_POOL_IDS 64

/* Each thread's unused random bytes for IDs: the last `left` bytes of buf,
 * taken from the end and wiped as they are taken. A fork empties the
 * forking thread's pool in the child (the only thread there), so that
 * parent and child never hand out the same bytes. */
static _Thread_local struct {
	uint8_t buf[ID_POOL_IDS * ID_RANDOM_BYTES];
	size_t left;
} id_pool;
static pthread_once_t id_pool_once = PTHREAD_ONCE_INIT;

static void id_pool_forget(void)
{
	crypto_wipe(id_pool.buf, sizeof(id_pool.buf));
	id_pool.left = 0;
}

static void id_pool_register(void)
{
	(void)pthread_atfork(NULL, NULL, id_pool_forget);
}

static int new_id(const char *prefix, char out[GMT_ID_SIZE])
{
	size_t plen = strlen(prefix);
	if (plen + 2 * ID_RANDOM_BYTES + 1 > GMT_ID_SIZE)
		return -EINVAL;
	pthread_once(&id_pool_once, id_pool_register);
	if (id_pool.left < ID_RANDOM_BYTES) {
		int r = crypto_random(id_pool.buf, sizeof(id_pool.buf));
		if (r < 0)
			return r;
		id_pool.left = sizeof(id_pool.buf);
	}
	id_pool.left -= ID_RANDOM_BYTES;
	uint8_t *rnd = id_pool.buf + id_pool.left;
	memcpy(out, prefix, plen);
	chsm_hex_encode(rnd, ID_RANDOM_BYTES, out + plen);
	crypto_wipe(rnd, ID_RANDOM_BYTES);
	return 0;
}

int gmt_new_request_id(char out[GMT_ID_SIZE])
{
	return new_id("req-", out);
}

int gmt_new_task_id(char out[GMT_ID_SIZE])
{
	return new_id("task-", out);
}

/* Adds value (stolen, may be NULL after a failed constructor) to obj. */
static int add_member(json_t *obj, const char *key, json_t *value, int err_if_null)
{
	if (!value)
		return err_if_null;
	return json_object_set_new(obj, key, value) < 0 ? -ENOMEM : 0;
}

int gmt_envelope(int code, const char *message, const char *request_id, const json_t *data,
		 char **ret_body, size_t *ret_len)
{
	json_t *obj = NULL;
	char *s = NULL;
	int r = -EINVAL;
	if (code < 0 || !request_id || !ret_body || !ret_len ||
	    (data && (code != GMT_OK || !json_is_object(data))))
		goto out;
	if (!message)
		message = gmt_code_message(code);
	obj = json_object();
	if (!obj) {
		r = -ENOMEM;
		goto out;
	}
	/* json_string fails on invalid UTF-8 (or on memory): report -EINVAL. */
	r = add_member(obj, "code", json_integer(code), -ENOMEM);
	if (r == 0)
		r = add_member(obj, "message", json_string(message), -EINVAL);
	if (r == 0)
		r = add_member(obj, "requestId", json_string(request_id), -EINVAL);
	if (r == 0 && data)
		/* Referenced, not copied (a 7.2.3 tree is large); json_dumps
		 * does not change it. */
		r = add_member(obj, "data", json_incref((json_t *)data), -ENOMEM);
	if (r < 0)
		goto out;
	s = json_dumps(obj, GMT_JSON_DUMP_FLAGS);
	if (!s) {
		r = -ENOMEM;
		goto out;
	}
	*ret_len = strlen(s);
	*ret_body = s;
out:
	json_decref(obj);
	return r;
}

int gmt_envelope_text(int code, const char *message, const char *request_id,
		      const char *data_text, size_t data_len, char **ret_body, size_t *ret_len)
{
	char *head = NULL, *body;
	size_t head_len = 0;
	static const char member[] = ",\"data\":";
	if (code != GMT_OK || !data_text || data_len < 2 || data_text[0] != '{')
		return -EINVAL;
	int r = gmt_envelope(code, message, request_id, NULL, &head, &head_len);
	if (r < 0)
		return r;
	/* head is {"code":0,"message":...,"requestId":...}: data goes before
	 * its closing brace, where gmt_envelope would have put it. */
	if (data_len > SIZE_MAX - head_len - sizeof(member) ||
	    !(body = malloc(head_len + sizeof(member) + data_len))) {
		free(head);
		return -ENOMEM;
	}
	size_t len = head_len - 1;
	memcpy(body, head, len);
	memcpy(body + len, member, sizeof(member) - 1);
	len += sizeof(member) - 1;
	memcpy(body + len, data_text, data_len);
	len += data_len;
	body[len++] = '}';
	body[len] = '\0';
	free(head);
	*ret_body = body;
	*ret_len = len;
	return 0;
}

int gmt_envelope_parse(const char *body, size_t len, int *ret_code, char **ret_message,
		       json_t **ret_data)
{
	return gmt_envelope_parse_id(body, len, ret_code, ret_message, NULL, ret_data);
}

int gmt_envelope_parse_id(const char *body, size_t len, int *ret_code, char **ret_message,
			  char **ret_request_id, json_t **ret_data)
{
	json_error_t jerr;
	json_t *root = NULL;
	char *msg = NULL, *rid = NULL;
	int r = -EINVAL;
	if (!body || !ret_code)
		goto out;
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root))
		goto out;
	json_t *code = json_object_get(root, "code");
	json_t *message = json_object_get(root, "message");
	json_t *request_id = json_object_get(root, "requestId");
	json_t *data = json_object_get(root, "data");
	if (!json_is_integer(code) || json_integer_value(code) < 0 ||
	    json_integer_value(code) > INT_MAX)
		goto out;
	if (!json_is_string(message) ||
	    strlen(json_string_value(message)) != json_string_length(message))
		goto out;
	if ((request_id && !json_is_string(request_id)) || (data && !json_is_object(data)))
		goto out;
	if ((ret_message && !(msg = strdup(json_string_value(message)))) ||
	    (ret_request_id && request_id && !(rid = strdup(json_string_value(request_id))))) {
		free(msg);
		r = -ENOMEM;
		goto out;
	}
	if (ret_message)
		*ret_message = msg;
	if (ret_request_id)
		*ret_request_id = rid;
	if (ret_data)
		*ret_data = data ? json_incref(data) : NULL;
	*ret_code = (int)json_integer_value(code);
	r = 0;
out:
	json_decref(root);
	return r;
}
