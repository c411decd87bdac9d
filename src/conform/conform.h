/*
 * conform.h: chsm-conform, the conformance checker a CHSM vendor runs
 * against any device that claims OpenCHSM wire profile v1 (PROFILE.md).
 *
 * It is the platform's view of the device, written from PROFILE.md alone:
 * requests are built and signed here (wire.c: string to sign, SM2 and
 * HMAC-SM3, sent with libcurl), every answer is checked here (HTTP status
 * against Appendix A, the §6 envelope, the §5 device signature), callbacks
 * are received and verified here (receiver.c), images are taken apart and
 * tampered with here (tamper.c). Nothing of the server (src/api, src/proto,
 * src/image) is linked; only the cryptographic primitives (src/crypto) and
 * small helpers (src/common) are shared.
 *
 * Guarantees: every check ends as exactly one result (pass, fail or skip,
 * with the evidence of a failure); nothing is reported passed that was not
 * observed; the platform key the checker makes lives in memory only and is
 * wiped at exit.
 */
#ifndef CHSM_CONFORM_H
#define CHSM_CONFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "crypto/crypto.h"

/* What PROFILE.md fixes, written down here rather than taken from the
 * server's headers. */
#define CF_API_BASE        "/gmt0088/v1"
#define CF_MAX_BODY        (1024 * 1024)      /* §2: larger is 1006 */
#define CF_AUTH_WINDOW_MS  (300 * 1000)       /* §5: ±300 s */
#define CF_FP_LEN          64
/* An sm3 that matches no file the checker makes. */
#define ZERO_SM3 "0000000000000000000000000000000000000000000000000000000000000000"

enum cf_outcome { CF_PASS, CF_FAIL, CF_SKIP };

/* Sections of the report, in the profile's order. */
enum cf_section {
	CF_S3,     /* methods and URLs */
	CF_S4,     /* authorisation categories */
	CF_S5,     /* authentication information */
	CF_S6,     /* status information (envelope) */
	CF_S7,     /* callbacks and tasks */
	CF_S8,     /* running states */
	CF_S9,     /* interfaces */
	CF_S10,    /* images and packages */
	CF_SA,     /* Appendix A codes */
	CF_NSECTIONS
};

struct cf_result {
	enum cf_section section;
	enum cf_outcome outcome;
	char *name;
	char *evidence;   /* failures: request, expected, got; skips: why */
};

struct cf_receiver;

/* The run: options, keys, the HTTP handle, the results. */
struct cf {
	/* options */
	char *base;                 /* https://host:port, no trailing '/' */
	const char *cacert;
	bool pinned;
	char pin_fp[CF_FP_LEN + 1];
	bool tofu;
	const char *enrollment_code;
	const char *image_dir;      /* absolute, or NULL */
	const char *vendor_key_path;
	const char *record_dir;
	const char *vsm_ip;         /* address VSMs are created on */
	int vsm_port_base;
	bool destructive;
	bool verbose;
	long timeout_ms;
	long task_timeout_ms;
	/* state */
	void *curl;
	int record_seq;
	crypto_sm2_key *platform_key;
	char platform_fp[CF_FP_LEN + 1];
	crypto_sm2_key *device_key;
	char device_fp[CF_FP_LEN + 1];
	bool enrolled;
	struct cf_receiver *rx;
	const char *callback_listen;   /* host:port, NULL: 127.0.0.1:0 */
	const char *callback_base_opt; /* given base URL of the receiver */
	char callback_base[256];       /* http://host:port */
	json_t *details;               /* 7.2.1 data */
	json_t *config;                /* 7.2.3 config at the start */
	char prefix[24];               /* names of what this run creates */
	char created[32][80];          /* VSMs created and not yet deleted */
	size_t ncreated;
	char left_changed[1024];       /* what the run could not put back */
	/* §6: secrets the checker sent (enrollment code, token secrets, upload
	 * credentials); every answer is searched for each. */
	const char *secrets[8];
	size_t nsecrets;
	size_t answers, leaks;
	char leak_evidence[1024];
	struct cf_result *results;
	size_t nresults, capresults;
};

/* How to build one request. A zeroed struct (plus method and path) is a
 * correct request signed with the platform key; each member set changes
 * one thing, for the error checks. */
enum cf_auth { CF_AUTH_PLATFORM = 0, CF_AUTH_NONE, CF_AUTH_HMAC, CF_AUTH_KEY };

struct cf_req {
	const char *method;
	const char *path;            /* after CF_API_BASE, or the whole target with raw_target */
	const char *body;            /* NULL: none */
	size_t body_len;             /* 0: strlen(body) */
	enum cf_auth auth;
	const char *hmac_code;       /* CF_AUTH_HMAC */
	const crypto_sm2_key *key;   /* CF_AUTH_KEY */
	const char *timestamp;       /* overrides, sent as given */
	int64_t ts_offset_ms;
	const char *nonce;
	const char *key_id;
	const char *alg;
	const char *signature;
	const char *omit;            /* a header left out */
	const char *idem;            /* X-GMT-Idempotency-Key */
	const char *content_type;    /* default application/json with a body */
	const char *sign_body;       /* sign this body instead of the one sent */
	bool raw_target;
};

/* One answer as received, with what the checker found about it. */
struct cf_resp {
	long status;                 /* 0: no answer (transport) */
	char *body;
	size_t body_len;
	json_t *json;                /* the body parsed, or NULL */
	int code;                    /* the envelope's code, -1 without one */
	json_t *data;                /* borrowed from json, or NULL */
	char *allow;                 /* Allow header */
	char *ctype;                 /* Content-Type header */
	char *dev_key_id_raw;        /* X-GMT-Device-Key-Id (last one) */
	char *dev_sig_raw;           /* X-GMT-Device-Signature (last one) */
	int dev_key_id_count, dev_sig_count;
	char nonce[80];              /* the nonce sent ("" none) */
	char what[320];              /* "METHOD target body…", for evidence */
	char transport[256];         /* "" or why no answer came */
	char sig_problem[256];       /* "" when the device signature verified */
	char env_problem[256];       /* "" when the body is a §6 envelope */
};

/* ---- wire.c ---- */
/* Adds a secret every later answer must not contain (the string is kept,
 * not copied). */
void cf_secret(struct cf *cf, const char *secret);
int cf_wire_init(struct cf *cf);
void cf_wire_free(struct cf *cf);
/* Sends one request and fills *ret (always, also without an answer).
 * Returns 0, or -1 when no HTTP answer came (ret->transport says why). */
int cf_send(struct cf *cf, const struct cf_req *req, struct cf_resp *ret);
void cf_resp_free(struct cf_resp *r);
/* Shorthands for correct platform requests. */
int cf_get(struct cf *cf, const char *path, struct cf_resp *ret);
int cf_call(struct cf *cf, const char *method, const char *path, const char *body,
	    struct cf_resp *ret);
/* 7.4.1 without authentication, with a fresh nonce; as cf_send. */
int cf_get_fingerprint(struct cf *cf, struct cf_resp *ret);
/* The string to sign of §5 for the given parts (malloc'ed). */
char *cf_string_to_sign(const char *method, const char *target, const char *ts,
			const char *nonce, const char *key_id, const void *body, size_t len);
/* A fresh nonce of 32 characters of [A-Za-z0-9_-]. */
void cf_new_nonce(char out[33]);
/* Verifies an SM2 signature (base64 DER) over msg with key: true if valid. */
bool cf_sm2_ok(const crypto_sm2_key *key, const char *msg, size_t len, const char *sig_b64);
/* The HTTP status Appendix A gives a code, 0 for a code it does not define. */
int cf_code_http(int code);
struct cf_received;
/* With --record, writes a received callback to DIR/cb-NNNN.json. */
void cf_record_callback(struct cf *cf, const struct cf_received *cb);
/* Learns the device key from 7.4.1 (checked against the pin). Returns 0 or
 * -1 with a reason in why. */
int cf_learn_device_key(struct cf *cf, char *why, size_t whylen);

/* ---- report.c ---- */
void cf_add(struct cf *cf, enum cf_section s, enum cf_outcome o, const char *name,
	    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A response expected to carry code and http (and, as always, a signed §6
 * envelope): records pass or fail; returns true on pass. */
bool cf_expect(struct cf *cf, enum cf_section s, const char *name, const struct cf_resp *r,
	       int code, int http);
/* Checks the members of obj against a specification of space-separated
 * "path:type" items (type s string, i integer, n number, b boolean,
 * o object, a array, and S, I, O, A for "or null"; path may be
 * "capacity.maxVsms"). Returns NULL when all hold, else a malloc'ed
 * description of the first that does not. */
char *cf_shape(const json_t *obj, const char *spec);
/* cf_expect, then cf_shape on its data; one result. */
bool cf_expect_shape(struct cf *cf, enum cf_section s, const char *name,
		     const struct cf_resp *r, int code, int http, const char *spec);
/* Prints the table; returns the number of failures. */
size_t cf_report(const struct cf *cf);
void cf_results_free(struct cf *cf);
/* Notes something the run leaves changed on the device. */
void cf_left_changed(struct cf *cf, const char *what);

/* ---- receiver.c: callbacks, and a slow or failing upload target ---- */
struct cf_received {
	char method[8];
	char target[512];
	char ts[32], nonce[80], key_id[80], alg[32], sig[200];
	char *body;
	size_t body_len;
};
int cf_receiver_start(struct cf *cf);
void cf_receiver_stop(struct cf *cf);
/* Waits up to timeout_ms for a POST whose body's taskId is task_id; copies
 * it into *ret (body malloc'ed). Returns 0 or -1. */
int cf_receiver_wait(struct cf *cf, const char *task_id, long timeout_ms,
		     struct cf_received *ret);
/* Number of requests received on a path prefix so far. */
int cf_receiver_count(struct cf *cf, const char *prefix);
/* PUTs to /slow/ are held until released. */
void cf_receiver_release(struct cf *cf);

/* ---- tamper.c: the container of images and packages ---- */
enum cf_tamper { CF_T_MAGIC, CF_T_SIGNATURE, CF_T_DOMAIN, CF_T_RESIGN_HEADER };
/* Writes a copy of the image in src to dst with one change; key is the
 * checker's own key for CF_T_RESIGN_HEADER. Returns 0 or -1 (why). */
int cf_tamper(const char *src, const char *dst, enum cf_tamper how, const crypto_sm2_key *key,
	      char *why, size_t whylen);
/* Builds a package (type 4) of one small file for component/version,
 * signed with key. Returns 0 or -1. */
int cf_make_package(const char *dst, const char *component, const char *version,
		    const crypto_sm2_key *key, char *why, size_t whylen);
/* Lowercase hex SM3 of a file. Returns 0 or -1. */
int cf_file_sm3(const char *path, char out[CF_FP_LEN + 1]);

/* ---- checks.c: the run, in order; helpers shared with checks_vsm.c ---- */
void cf_run_checks(struct cf *cf);
/* An async request answered 202 with a task object for operation (and
 * target, when not NULL): one result; the task id is copied to ret_id. */
bool cf_async(struct cf *cf, enum cf_section s, const char *name, const char *method,
	      const char *path, const char *body, const char *op, const char *target,
	      char ret_id[80]);
/* Polls GET /tasks/{id} until it ends (--task-timeout); *ret is the last
 * answer. Returns 0, or -1 on timeout or an answer that is not a task. */
int cf_wait_task(struct cf *cf, const char *id, struct cf_resp *ret);
/* Waits for the task and records whether it ended in state/code, with a
 * task object of §7 (one result). Returns the final task (new reference)
 * or NULL. */
json_t *cf_task_ends(struct cf *cf, enum cf_section s, const char *name, const char *id,
		     const char *state, int code);
/* The callback for a task ended as task (the polled object) came to
 * cb_path, signed by the device key: one result. */
void cf_check_callback(struct cf *cf, const char *name, const json_t *task, const char *cb_path);
/* A request answered with code (HTTP from Appendix A; 200 for 0) in a
 * signed envelope: one result. Returns true on pass. */
bool cf_check_call(struct cf *cf, enum cf_section s, const char *name, const char *method,
		   const char *path, const char *body, int code);
/* An operation that must fail with code: answered at once with it, or
 * accepted and its task fails with it. One result. */
void cf_expect_refused(struct cf *cf, enum cf_section s, const char *name, const char *method,
		       const char *path, const char *body, int code);
/* The 7.3.1 object's state of a VSM, or "" (static buffer). */
const char *cf_vsm_state(struct cf *cf, const char *vsm_id);
/* Creates a VSM (stopped) on a fresh port, waits for it; the id is
 * remembered for the clean-up. Returns true when it exists. */
bool cf_make_vsm(struct cf *cf, const char *suffix, bool with_token, char ret_id[80]);
/* Deletes a VSM the checker made and has not deleted yet (else nothing),
 * waiting for the task. */
void cf_drop_vsm(struct cf *cf, const char *id);
/* A TCP port free on the VSM address right now (loopback default). */
int cf_free_port(struct cf *cf);

/* ---- checks_vsm.c ---- */
void cf_check_vsms(struct cf *cf);
void cf_check_images(struct cf *cf);
void cf_check_destructive(struct cf *cf);

#endif
