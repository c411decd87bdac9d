/*
 * chsm_client.h: the platform side of GM/T 0088-2020 (OpenCHSM wire
 * profile v1): a client that sends signed management requests to a CHSM and
 * authenticates every answer with the device key.
 *
 * Guarantees:
 *  - Every request to a platform interface is signed with the platform key
 *    (SM2, PROFILE.md §5) over exactly the request-target sent on the wire.
 *  - No response reaches the caller unless its X-GMT-Device-Signature
 *    verifies with the device key and X-GMT-Device-Key-Id names that key.
 *    The device key is learnt once per client from the unauthenticated
 *    interface 7.4.1 and must match the pinned fingerprint when one is given.
 *  - A client refuses to be created when nothing would authenticate the
 *    device (no pinned fingerprint, no CA certificate) unless the caller
 *    explicitly asks for insecure operation.
 *  - The library never logs and never prints. Key material it loads is
 *    wiped when freed.
 *
 * Threads: a chsm_client is not thread-safe; use one client per thread.
 * Distinct clients may be used concurrently. chsm_client_new initialises
 * libcurl globally (reference counted); libcurl 7.84 or newer built
 * thread-safe makes that safe to call from any thread.
 *
 * Errors: functions return 0 or a negative number: a negative errno value
 * (-EINVAL, -ENOMEM, -ENOENT, -EEXIST, -ETIMEDOUT, ...) or one of the
 * CHSM_CLIENT_E_* codes below. chsm_client_strerror describes any of them.
 * An answer of the CHSM with a non-zero code is not an error of the
 * library: the call returns 0 and the response carries the code.
 */
#ifndef OPENCHSM_CHSM_CLIENT_H
#define OPENCHSM_CHSM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The base path the client puts in front of every interface path. */
#define CHSM_CLIENT_API_BASE        "/gmt0088/v1"
/* Length of a key fingerprint in hex digits (lowercase hex SM3). */
#define CHSM_CLIENT_FINGERPRINT_LEN 64

/* Errors of the library itself, beyond negative errno values. They are far
 * below any errno value and are only ever added, never renumbered. */
enum chsm_client_error {
	/* The exchange failed below HTTP: DNS, connect, TLS, timeout. */
	CHSM_CLIENT_E_TRANSPORT        = -10001,
	/* A response's X-GMT-Device-Signature is missing or does not verify. */
	CHSM_CLIENT_E_DEVICE_SIGNATURE = -10002,
	/* The device key differs from the pinned fingerprint, or a response
	 * names another device key. */
	CHSM_CLIENT_E_DEVICE_KEY       = -10003,
	/* Not insecure, yet no pinned fingerprint and no CA certificate, or an
	 * http:// URL. */
	CHSM_CLIENT_E_UNTRUSTED        = -10004,
	/* The body is not a response envelope of the profile. */
	CHSM_CLIENT_E_BAD_RESPONSE     = -10005,
	/* The operation needs a platform key and the client has none. */
	CHSM_CLIENT_E_NO_KEY           = -10006,
	/* chsm_client_drift: a precondition failed (target not an empty,
	 * stopped VSM; source running; no image; address in use); nothing was
	 * changed. */
	CHSM_CLIENT_E_DRIFT_REFUSED    = -10007,
	/* chsm_client_drift: a CHSM answered an error or a task failed; the
	 * result carries the Appendix A code. */
	CHSM_CLIENT_E_DRIFT_FAILED     = -10008,
	/* chsm_client_drift: the target does not hold what the source held
	 * (stateDigest, key count or source VSM differ). */
	CHSM_CLIENT_E_DRIFT_MISMATCH   = -10009,
	/* The image at a URL is not a readable image of the expected kind. */
	CHSM_CLIENT_E_BAD_IMAGE        = -10010,
};

typedef struct chsm_client chsm_client;

/* Options of chsm_client_new. Zero-initialise, then set what you need. */
struct chsm_client_options {
	/* Required. "https://host:port", no path; CHSM_CLIENT_API_BASE is
	 * appended. "http://" (a development CHSM on loopback) only together
	 * with insecure. */
	const char *url;
	/* Platform private key, PKCS#8 PEM. NULL: requests go unsigned
	 * (enough for 7.4.1 and for enrollment). */
	const char *platform_key_path;
	/* Device key fingerprint read from the CHSM at initialisation (64 hex
	 * digits, either case). NULL: the key served by 7.4.1 is accepted as is
	 * (trust on first use within the client). */
	const char *device_fingerprint;
	/* CA certificate(s), PEM, that verify the CHSM's TLS certificate
	 * (peer and host name). NULL: TLS is not verified. */
	const char *cacert_path;
	/* Allow a client with neither device_fingerprint nor cacert_path, and
	 * plain http. Responses are still verified with the device key. */
	bool insecure;
	/* Connection timeout; 0 means 10 000 ms. */
	long connect_timeout_ms;
	/* Limit for one whole HTTP exchange; 0 means 60 000 ms. */
	long timeout_ms;
};

/* One answer of the CHSM, verified. Strings are NUL-terminated and owned
 * by the response; release them with chsm_client_response_free. */
struct chsm_client_response {
	int http_status;      /* e.g. 200, 202, 404 */
	int code;             /* Appendix A code: 0 on success */
	char *message;        /* "OK", "VSM not found", ... */
	char *request_id;     /* requestId, or NULL when absent */
	char *data;           /* the data object as compact JSON, or NULL */
	char *body;           /* the raw response body */
	size_t body_len;
};

/* Creates a client. Reads and checks the platform key (when given) and the
 * options; does not contact the CHSM. Returns 0 and sets *ret, -EINVAL for
 * a malformed URL or fingerprint or a negative timeout, -ENOENT/-EACCES/...
 * when the key file cannot be read, -EINVAL when it is not an SM2 key pair,
 * CHSM_CLIENT_E_UNTRUSTED (see the options), or -ENOMEM. */
int chsm_client_new(const struct chsm_client_options *opts, chsm_client **ret);

/* Frees the client, its connection and its keys (wiped). Accepts NULL. */
void chsm_client_free(chsm_client *cl);

/* Sends one request and returns the verified answer in *ret.
 * method: "GET", "PUT", "POST" or "DELETE" (any upper-case token).
 * path: the interface path after CHSM_CLIENT_API_BASE, e.g. "/vsms/v1",
 * optionally with a query; printable ASCII without spaces or '#'.
 * body: JSON text or NULL (not with GET); sent with
 * Content-Type: application/json. idempotency_key: NULL or 1..64 of
 * [A-Za-z0-9_.:-]. The request is signed with the platform key when the
 * client has one, except GET /auth/platform-key/fingerprint which is never
 * signed. The first call of a client first fetches and checks the device
 * key (7.4.1).
 * Returns 0 and fills *ret (whatever the CHSM's code), -EINVAL for bad
 * arguments, CHSM_CLIENT_E_TRANSPORT, CHSM_CLIENT_E_DEVICE_SIGNATURE,
 * CHSM_CLIENT_E_DEVICE_KEY, CHSM_CLIENT_E_BAD_RESPONSE or -ENOMEM. */
int chsm_client_request(chsm_client *cl, const char *method, const char *path, const char *body,
			const char *idempotency_key, struct chsm_client_response *ret);

/* Enrolls a platform key (7.4.2 while no platform key is configured):
 * PUT /auth/platform-key with {"publicKey": PEM}, authenticated with
 * HMAC-SM3 keyed by enrollment_code. key_path names a PEM file holding the
 * SM2 public key or the key pair to enroll; NULL means the client's own
 * platform key. The code is not kept. Returns as chsm_client_request, plus
 * CHSM_CLIENT_E_NO_KEY when key_path is NULL and the client has no key, and
 * the errors of chsm_client_key_info. */
int chsm_client_enroll(chsm_client *cl, const char *enrollment_code, const char *key_path,
		       struct chsm_client_response *ret);

/* Called by chsm_client_wait_task after each poll that got the task:
 * state is "pending", "running", "succeeded" or "failed"; task_json the
 * task object as compact JSON. Both are valid only during the call. */
typedef void chsm_client_progress_fn(void *userdata, const char *state, const char *task_json);

/* Polls GET /tasks/{task_id} (intervals growing from 50 ms to 1 s) until
 * the task's state is "succeeded" or "failed", and returns that last
 * answer, whose data is the task object. Transport failures, answers 5003
 * (unavailable, e.g. while the CHSM reboots) and answers 2004 (a poll
 * delivered twice, see docs/libchsmclient.md) are retried; any other
 * answer with a non-zero code ends the wait and is returned.
 * timeout_ms <= 0 waits without limit. progress may be NULL.
 * Returns 0 and fills *ret, -ETIMEDOUT, -EINVAL for a malformed task_id,
 * or an error of chsm_client_request other than CHSM_CLIENT_E_TRANSPORT. */
int chsm_client_wait_task(chsm_client *cl, const char *task_id, long timeout_ms,
			  chsm_client_progress_fn *progress, void *userdata,
			  struct chsm_client_response *ret);

/* Returns the fingerprint of the device key the client verifies responses
 * with, fetching it first (7.4.1) when not yet done: 0 and writes 64 hex
 * digits and a NUL into ret_fingerprint, or an error of
 * chsm_client_request. */
int chsm_client_device_fingerprint(chsm_client *cl,
				   char ret_fingerprint[CHSM_CLIENT_FINGERPRINT_LEN + 1]);

/* A short description of the last failure of a call on cl (the transport
 * error, what did not match, ...), or "" when none. Valid until the next
 * call on cl. Never holds secrets. */
const char *chsm_client_last_error(const chsm_client *cl);

/* Releases the strings of a response and zeroes it. Accepts NULL and a
 * zeroed response. */
void chsm_client_response_free(struct chsm_client_response *r);

/* Generates an SM2 key pair and writes it as PKCS#8 PEM to out_path, a new
 * file of mode 0600; an existing file is never overwritten. Returns 0 and,
 * when ret_fingerprint is not NULL, writes the key's fingerprint into it;
 * -EEXIST when out_path exists, another -errno for a file error, or a
 * crypto error. */
int chsm_client_keygen(const char *out_path,
		       char ret_fingerprint[CHSM_CLIENT_FINGERPRINT_LEN + 1]);

/* Reads a PEM file holding an SM2 public key or key pair. Returns 0 and
 * sets *ret_public_pem (SubjectPublicKeyInfo PEM, malloc'ed; may be NULL
 * when not wanted) and ret_fingerprint (may be NULL); -EINVAL when the file
 * holds no SM2 key, -errno when it cannot be read, or -ENOMEM. */
int chsm_client_key_info(const char *path, char **ret_public_pem,
			 char ret_fingerprint[CHSM_CLIENT_FINGERPRINT_LEN + 1]);

/* ---- drift: moving a failed VSM to another CHSM of its domain ---- */

/* The steps of chsm_client_drift, in the order they run. */
enum chsm_client_drift_step {
	CHSM_DRIFT_CHECK_SOURCE = 1, /* 7.3.1, 7.3.2 of the source VSM */
	CHSM_DRIFT_READ_IMAGE,       /* header of the given image (source down) */
	CHSM_DRIFT_CHECK_TARGET,     /* 7.3.1 of the target VSM */
	CHSM_DRIFT_STOP_SOURCE,      /* 7.3.8 of a source in fault (or running) */
	CHSM_DRIFT_EXPORT,           /* 7.3.5 on the source, waited for */
	CHSM_DRIFT_IMPORT,           /* 7.3.6 on the target, waited for */
	CHSM_DRIFT_MOVE_NETWORK,     /* 7.3.3 on the target */
	CHSM_DRIFT_START,            /* 7.3.7 on the target, waited for */
	CHSM_DRIFT_VERIFY,           /* 7.3.2 of the target: stateDigest */
};

enum chsm_client_drift_outcome {
	CHSM_DRIFT_OK,
	CHSM_DRIFT_SKIPPED,
	CHSM_DRIFT_FAILED,
};

/* Options of chsm_client_drift. Zero-initialise, then set what you need. */
struct chsm_client_drift_options {
	const char *vsm_id;            /* required: the source VSM */
	const char *target_vsm_id;     /* required: the empty, stopped target */
	/* An earlier image of the source VSM and the SM3 of the whole file,
	 * used only when the source CHSM does not answer. */
	const char *image_url;
	const char *image_sm3;
	/* CA file for an https image_url; NULL: the system's CA store. */
	const char *image_cacert_path;
	/* Give the target the source's network (ipAddress, prefixLength,
	 * gateway, port) before starting it. */
	bool move_network;
	/* Stop a running source VSM first; without it a running source is
	 * refused. */
	bool stop_source;
	/* Limit of the whole drift; 0: none (each exchange keeps the
	 * clients' own limits). */
	long timeout_ms;
};

/* Called once per step as it ends: outcome, how long it took, and a short
 * description (what was found or done, or why it failed; never a secret).
 * detail is valid only during the call. */
typedef void chsm_client_drift_step_fn(void *userdata, enum chsm_client_drift_step step,
				       enum chsm_client_drift_outcome outcome, long duration_ms,
				       const char *detail);

/* What chsm_client_drift found and did; release with
 * chsm_client_drift_result_free. */
struct chsm_client_drift_result {
	enum chsm_client_drift_step failed_step; /* 0 when none failed */
	int code;             /* Appendix A code of the failing answer or task, or 0 */
	char message[512];    /* why it failed ("" on success) */
	bool source_answered; /* the source CHSM answered: a fresh image was used */
	long total_ms;
	/* A JSON object: vsmId, targetVsmId, imageSource ("export" or
	 * "given"), imageUrl, sm3, keyCount, stateDigest, network (or null),
	 * networkMoved, steps [{step, outcome, durationMs, detail}], totalMs,
	 * and on failure failedStep, code, message. NULL only when out of
	 * memory. */
	char *json;
};

/* Moves VSM opts->vsm_id of the CHSM behind `from` into the empty VSM
 * opts->target_vsm_id of the CHSM behind `to` (both of one security
 * domain), and checks that the target then holds what the source held.
 * `from` may be NULL when the source CHSM is known to be lost. Steps (see
 * docs/libchsmclient.md for the rules): check the source (a source CHSM
 * that does not answer at the transport level means: use the given image
 * and read its header for the expected vsmId, keyCount, stateDigest and
 * network); check the target (stopped, no keys); stop the source if it is
 * in fault (running: only with stop_source); export a fresh image; import
 * it into the target; with move_network give the target the source's
 * network, refusing when something still answers at that address; start
 * the target; compare its stateDigest with the source's. Nothing changes
 * on the target before every precondition held; the target is never reset.
 * step (may be NULL) is called after each step.
 * Returns 0 when the target runs with the source's stateDigest;
 * CHSM_CLIENT_E_DRIFT_REFUSED, CHSM_CLIENT_E_DRIFT_FAILED (ret->code),
 * CHSM_CLIENT_E_DRIFT_MISMATCH, CHSM_CLIENT_E_BAD_IMAGE, -ETIMEDOUT, -EINVAL
 * for bad options, or an error of chsm_client_request (the target, or the
 * source once it answered, became unreachable). *ret is filled in every
 * case but -EINVAL. */
int chsm_client_drift(chsm_client *from, chsm_client *to,
		      const struct chsm_client_drift_options *opts,
		      chsm_client_drift_step_fn *step, void *userdata,
		      struct chsm_client_drift_result *ret);

/* "check-source", "read-image", ...: the step's name; "?" if unknown. */
const char *chsm_client_drift_step_name(enum chsm_client_drift_step step);

/* Releases ret->json and zeroes *ret. Accepts NULL. */
void chsm_client_drift_result_free(struct chsm_client_drift_result *ret);

/* Reads the header of the image at url (https://, http:// or file://)
 * without any secret: downloads at most its prologue and header (a Range
 * request; never more than 16 bytes plus the format's header bound) and
 * checks the magic, format version, flags and header length of
 * docs/image-format.md. cacert_path: CA file for https (NULL: the system
 * store); timeout_ms 0: 60 000. Returns 0 and sets *ret_header_json (the
 * header object as compact JSON, malloc'ed) and *ret_type (1 VSM image,
 * 2 CHSM image, 3 backup, 4 package); CHSM_CLIENT_E_TRANSPORT when it
 * cannot be read, CHSM_CLIENT_E_BAD_IMAGE when it is not such an image,
 * -EINVAL or -ENOMEM. err (may be NULL) receives a one-line reason. */
int chsm_client_image_header(const char *url, const char *cacert_path, long timeout_ms,
			     char **ret_header_json, int *ret_type, char *err, size_t errlen);

/* A static English description of an error returned by this library:
 * "device signature invalid" for CHSM_CLIENT_E_DEVICE_SIGNATURE, the
 * system's text for a negative errno value. Never NULL. */
const char *chsm_client_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif
